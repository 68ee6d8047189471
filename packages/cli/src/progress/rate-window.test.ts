import { describe, expect, it } from 'vitest';
import { RateWindow } from './rate-window.js';

const MB = 1_000_000;

describe('RateWindow', () => {
  it('knows no rate before two readings', () => {
    const rates = new RateWindow();
    expect(rates.bytesPerSecond(0)).toBeNull();
    rates.record(0, 5 * MB);
    expect(rates.bytesPerSecond(1000)).toBeNull();
  });

  it('measures a steady counter', () => {
    const rates = new RateWindow();
    for (let t = 0; t <= 30_000; t += 250) rates.record(t, t * 2000); // 2 MB/s
    expect(rates.bytesPerSecond(30_000)).toBeCloseTo(2 * MB, -3);
  });

  it('forgets what happened before the window: the rate follows a change of pace, unlike the whole-run average', () => {
    const rates = new RateWindow(10_000);
    let bytes = 0;
    for (let t = 0; t <= 20_000; t += 500) {
      bytes += t <= 10_000 ? 50 * MB : 0.5 * MB; // 100 MB/s for 10 s, then 1 MB/s
      rates.record(t, bytes);
    }
    expect(rates.bytesPerSecond(20_000)).toBeCloseTo(1 * MB, -4);
    expect(bytes / 20).toBeGreaterThan(40 * MB); // what an average since the start would have said
  });

  it('decays while the counter stands still', () => {
    const rates = new RateWindow(10_000);
    for (let t = 0; t <= 10_000; t += 1000) rates.record(t, t * 1000); // 1 MB/s
    expect(rates.bytesPerSecond(10_000)).toBeCloseTo(1 * MB, -3);
    expect(rates.bytesPerSecond(15_000)).toBeCloseTo(0.5 * MB, -3); // 5 MB in the last 10 s
    expect(rates.bytesPerSecond(20_000)).toBe(0); // nothing moved in the last 10 s
  });

  it('starts over when the counter goes back', () => {
    const rates = new RateWindow();
    rates.record(0, 0);
    rates.record(1000, 100 * MB);
    rates.record(2000, 10);
    expect(rates.bytesPerSecond(2000)).toBeNull();
    rates.record(3000, 1 * MB + 10);
    expect(rates.bytesPerSecond(3000)).toBeCloseTo(1 * MB, -3);
  });

  it('keeps readings closer than its resolution as one, so that memory stays bounded', () => {
    const rates = new RateWindow(10_000, 100);
    for (let t = 0; t <= 10_000; t += 1) rates.record(t, t * 1000); // every millisecond
    expect(rates.bytesPerSecond(10_000)).toBeCloseTo(1 * MB, -3);
    expect(rates.readings).toBeLessThan(110); // about one per 100 ms of the window, not 10 000
  });
});
