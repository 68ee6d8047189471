import { describe, expect, it } from 'vitest';
import { completion } from './completion.js';
import { formatDuration, type ProgressView, progressHead, renderBar } from './progress-text.js';

const MiB = 1024 * 1024;

function view(bytes: number, expected: ProgressView['expected'], bytesPerSecond: number | null): ProgressView {
  return { bytes, unit: 'read', bytesPerSecond, expected, completion: expected ? completion(bytes, expected, bytesPerSecond) : null };
}

describe('progress text', () => {
  it('writes durations the short way', () => {
    expect([formatDuration(0), formatDuration(44.6), formatDuration(725), formatDuration(11_220), formatDuration(-3)]).toEqual([
      '0s',
      '45s',
      '12m05s',
      '3h07m',
      '0s',
    ]);
  });

  it('draws a bar of 20 cells, rounded down, never beyond its ends', () => {
    expect(renderBar(0)).toBe(`[${'.'.repeat(20)}]`);
    expect(renderBar(42)).toBe(`[${'#'.repeat(8)}${'.'.repeat(12)}]`);
    expect(renderBar(100)).toBe(`[${'#'.repeat(20)}]`);
    expect(renderBar(250, 4)).toBe('[####]');
  });

  it('without a total: the bytes and the rate', () => {
    expect(progressHead(view(1.2 * 1024 * MiB, null, 312e6), { bar: true })).toBe('1.20 GiB read · 312.0 MB/s');
    expect(progressHead(view(5, null, null), { bar: true })).toBe('5 B read');
  });

  it('with a total: bar (a terminal only), percent, bytes of the total (~ for an estimate), rate and ETA', () => {
    const estimate = { bytes: 2.9 * 1024 * MiB, exact: false };
    const at42 = view(0.42 * 2.9 * 1024 * MiB, estimate, 4e6);
    expect(progressHead(at42, { bar: true })).toMatch(/^\[########\.{12}\] 42% 1\.2\d GiB \/ ~2\.90 GiB · 4\.0 MB\/s · ETA 7m\d\ds$/);
    expect(progressHead(at42, { bar: false })).toMatch(/^42% 1\.2\d GiB \/ ~2\.90 GiB · 4\.0 MB\/s · ETA 7m\d\ds$/);
    expect(progressHead(view(MiB, { bytes: 4 * MiB, exact: true }, null), { bar: false })).toBe('25% 1.00 MiB / 4.00 MiB');
  });

  it('past an estimate: 99% and says so instead of an ETA', () => {
    expect(progressHead(view(5 * MiB, { bytes: 4 * MiB, exact: false }, 1e6), { bar: true })).toBe(
      `[${'#'.repeat(19)}.] 99% 5.00 MiB / ~4.00 MiB · 1.0 MB/s · beyond the estimate`,
    );
  });
});
