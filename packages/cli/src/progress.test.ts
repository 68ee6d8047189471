import { setTimeout as sleep } from 'node:timers/promises';
import { UsageError } from '@bucketpipe/core';
import { describe, expect, it } from 'vitest';
import type { Log, LogFields } from './log/index.js';
import { ProgressReporter, type ProgressSample, progressEventIntervalMs } from './progress.js';

interface Said {
  level: 'info' | 'warn' | 'status';
  event?: string;
  text: string;
  fields?: LogFields;
}

function fakeLog(format: 'human' | 'json', live = false): Log & { said: Said[] } {
  const said: Said[] = [];
  return {
    format,
    live,
    said,
    info: (event, text, fields) => void said.push({ level: 'info', event, text, fields }),
    warn: (event, text, fields) => void said.push({ level: 'warn', event, text, fields }),
    commandOutput: () => {},
    failure: () => {},
    bug: () => {},
    status: (text) => void said.push({ level: 'status', text }),
  };
}

const MiB = 1024 * 1024;

function sample(bytes: number, expectedBytes?: number): ProgressSample {
  return {
    bytes,
    unit: 'read',
    expected: expectedBytes === undefined ? null : { bytes: expectedBytes, exact: false },
    fields: { rawBytes: bytes },
    line: (head) => `send ${head} · 3 uploading`,
  };
}

describe('ProgressReporter', () => {
  it('JSON: a progress event at every interval with the latest bytes, rate, and percent and ETA against the estimate', async () => {
    const log = fakeLog('json');
    const progress = new ProgressReporter(log, { eventIntervalMs: 60 });
    for (let i = 1; i <= 12; i++) {
      progress.update(sample(i * MiB, 100 * MiB));
      await sleep(25);
    }
    const events = log.said.filter((s) => s.event === 'progress');
    expect(events.length).toBeGreaterThanOrEqual(2);
    expect(events.length).toBeLessThanOrEqual(7); // by the interval, not by update
    const last = events.at(-1) as Said;
    expect(last.fields).toMatchObject({ expectedRawBytes: 100 * MiB, estimate: true });
    expect(last.fields?.rawBytes).toBeGreaterThan(MiB);
    expect(last.fields?.percent).toBe(Math.floor(((last.fields?.rawBytes as number) / (100 * MiB)) * 100));
    expect(last.fields?.MBps).toBeGreaterThan(10); // about 1 MiB per 25 ms
    expect(last.fields?.etaSeconds).toBeGreaterThan(0);
    expect(last.text).toMatch(/^send \d+% [\d.]+ MiB \/ ~100\.0 MiB · [\d.]+ MB\/s · ETA \d+s · 3 uploading$/);

    progress.summary({ command: 'send', state: 'complete', rawBytes: 12 * MiB, chunks: 12, seconds: 0.3 });
    const count = log.said.length;
    await sleep(150);
    expect(log.said.length, 'no progress event after the summary').toBe(count);
    expect(log.said.at(-1)).toMatchObject({ event: 'summary', text: expect.stringMatching(/^send complete: 12\.0 MiB/) });
  });

  it('JSON: without a known size, no percent or ETA fields', async () => {
    const log = fakeLog('json');
    const progress = new ProgressReporter(log, { eventIntervalMs: 30 });
    progress.update(sample(MiB));
    await sleep(20);
    progress.update(sample(2 * MiB));
    await sleep(60);
    const event = log.said.find((s) => s.event === 'progress');
    expect(event?.fields).toMatchObject({ rawBytes: 2 * MiB });
    expect(event?.fields).not.toHaveProperty('percent');
    expect(event?.fields).not.toHaveProperty('etaSeconds');
    progress.summary({});
  });

  it('--quiet: no progress at all', async () => {
    const json = fakeLog('json');
    const quiet = new ProgressReporter(json, { quiet: true, eventIntervalMs: 10 });
    quiet.update(sample(MiB));
    await sleep(50);
    expect(json.said).toEqual([]);
    const tty = fakeLog('human', true);
    new ProgressReporter(tty, { quiet: true }).update(sample(MiB));
    expect(tty.said).toEqual([]);
  });

  it('on a terminal: the live line with a bar, redrawn at most 4 times a second; elsewhere in human format: nothing', () => {
    const tty = fakeLog('human', true);
    const progress = new ProgressReporter(tty);
    for (let i = 1; i <= 100; i++) progress.update(sample(i * MiB, 400 * MiB));
    expect(tty.said).toHaveLength(1);
    expect(tty.said[0]?.text).toMatch(/^send \[\.{20}\] 0% 1\.00 MiB \/ ~400\.0 MiB · 3 uploading$/);

    const pipe = fakeLog('human', false);
    const quietPipe = new ProgressReporter(pipe, { eventIntervalMs: 10 });
    quietPipe.update(sample(MiB));
    expect(pipe.said).toEqual([]);
  });

  it('says messages, warnings and the summary in either format', () => {
    const log = fakeLog('human');
    const progress = new ProgressReporter(log);
    progress.message('resuming stream x', 'resume');
    progress.warning('the cursor cannot be published');
    progress.summary({ command: 'ls', streams: 2, location: '/srv' });
    expect(log.said).toEqual([
      { level: 'info', event: 'resume', text: 'resuming stream x', fields: undefined },
      { level: 'warn', event: 'warning', text: 'the cursor cannot be published', fields: undefined },
      { level: 'info', event: 'summary', text: 'ls: 2 streams at /srv', fields: { command: 'ls', streams: 2, location: '/srv' } },
    ]);
  });

  it('emits every 10 s unless BUCKETPIPE_PROGRESS_INTERVAL (for tests) says otherwise', () => {
    expect(progressEventIntervalMs(undefined)).toBe(10_000);
    expect(progressEventIntervalMs('')).toBe(10_000);
    expect(progressEventIntervalMs('250ms')).toBe(250);
    expect(() => progressEventIntervalMs('soon')).toThrow(UsageError);
    expect(() => progressEventIntervalMs('soon')).toThrow(/BUCKETPIPE_PROGRESS_INTERVAL=soon: not a duration/);
  });
});
