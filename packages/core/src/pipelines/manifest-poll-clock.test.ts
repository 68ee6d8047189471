import { describe, expect, it } from 'vitest';
import { ManifestPollClock } from './manifest-poll-clock.js';

const INTERVAL = 1000;
const READ_MS = 30;

interface SenderModel {
  /** The sender's clock minus the receiver's. */
  skewMs: number;
  /** updatedAt of the k-th write, on the receiver's clock (undefined: no such write). */
  writeAt: (k: number) => number | undefined;
  /** From a write's updatedAt until a read sees it. */
  readableAfterMs: (k: number) => number;
}

/** A steady sender: a write every `period` ms from 900 ms on, readable `latency` ms after its timestamp, ± `jitter`. */
function steadySender(period: number, latency: number, skewMs = 0, jitter = 0): SenderModel {
  // A fixed pseudo-random sequence: the same jitter on every run.
  const wobble = (k: number) => (((k * 7919) % 101) / 100 - 0.5) * 2 * jitter;
  return { skewMs, writeAt: (k) => 900 + period * k, readableAfterMs: (k) => latency + wobble(k) };
}

interface Outcome {
  reads: number;
  writesSeen: number;
  /** Mean time from a write becoming readable until the first read that saw it. */
  meanLagMs: number;
  delays: number[];
}

/** The receiver's poll loop against `sender` until `untilMs`: each read is served halfway through. */
function follow(sender: SenderModel, next: (clock: ManifestPollClock, now: number) => number, untilMs = 30_000): Outcome {
  const clock = new ManifestPollClock(INTERVAL);
  const latestAt = (servedAt: number) => {
    let latest: number | undefined;
    for (let k = 0; ; k++) {
      const at = sender.writeAt(k);
      if (at === undefined || at + sender.readableAfterMs(k) > servedAt) return { k: k - 1, at: latest };
      latest = at;
    }
  };
  let now = 1500;
  const first = latestAt(now);
  clock.observe((first.at as number) + sender.skewMs, undefined, now);
  let lastK = first.k;
  const outcome: Outcome = { reads: 0, writesSeen: 0, meanLagMs: 0, delays: [] };
  let lagSum = 0;
  while (now < untilMs) {
    const delay = next(clock, now);
    outcome.delays.push(delay);
    now += delay;
    const served = now + READ_MS / 2;
    const seen = latestAt(served);
    outcome.reads++;
    if (seen.k !== lastK) {
      lagSum += served - ((seen.at as number) + sender.readableAfterMs(seen.k));
      outcome.writesSeen++;
      lastK = seen.k;
    }
    clock.observe((seen.at as number) + sender.skewMs, now, now + READ_MS);
    now += READ_MS;
  }
  outcome.meanLagMs = lagSum / outcome.writesSeen;
  return outcome;
}

const timed = (clock: ManifestPollClock, now: number) => clock.delayMs(now);
const fixed = () => INTERVAL;

describe('ManifestPollClock', () => {
  it("reads a steady sender's writes within about a tenth of a period, where a fixed clock lags half of one", () => {
    for (const sender of [
      steadySender(1100, 100),
      steadySender(1100, 100, 5_000),
      steadySender(1070, 60, -3_000),
      steadySender(1150, 300, 0, 120),
    ]) {
      const locked = follow(sender, timed);
      const plain = follow(sender, fixed);
      expect(plain.meanLagMs).toBeGreaterThan(350);
      expect(locked.meanLagMs).toBeLessThan(plain.meanLagMs / 3);
      expect(locked.meanLagMs).toBeLessThan(150);
      expect(locked.writesSeen).toBeGreaterThanOrEqual(plain.writesSeen);
      // The price: 1.5–1.85 reads per write here, against 1.1 on a fixed clock.
      expect(locked.reads / locked.writesSeen).toBeLessThan(2);
    }
  });

  it('never waits longer than the poll interval, nor less than a few milliseconds', () => {
    const { delays } = follow(steadySender(1150, 300, 0, 120), timed);
    expect(Math.max(...delays)).toBeLessThanOrEqual(INTERVAL);
    expect(Math.min(...delays)).toBeGreaterThanOrEqual(20);
  });

  it('reads once a poll interval while it knows no period: one write seen, or writes further apart than 1.5 intervals', () => {
    const clock = new ManifestPollClock(INTERVAL);
    clock.observe(10_000, undefined, 10_100);
    expect(clock.delayMs(10_100)).toBe(INTERVAL);
    const slow = follow(steadySender(1_800, 100), timed, 20_000);
    expect(new Set(slow.delays)).toEqual(new Set([INTERVAL]));
  });

  it('goes back to a poll interval after two reads in vain when the sender stops writing', () => {
    let stopAt = Number.POSITIVE_INFINITY;
    const base = steadySender(1100, 100);
    const sender: SenderModel = { ...base, writeAt: (k) => (900 + 1100 * k < stopAt ? base.writeAt(k) : undefined) };
    stopAt = 10_000;
    const { delays } = follow(sender, timed, 20_000);
    // From well after the last write on, every read is a poll interval after the one before.
    const tail = delays.slice(-8);
    expect(new Set(tail)).toEqual(new Set([INTERVAL]));
  });

  it('forgets what it learnt when a write is older than the last one (a takeover, a clock stepped back)', () => {
    const clock = new ManifestPollClock(INTERVAL);
    clock.observe(10_000, undefined, 10_200);
    clock.observe(11_100, 10_150, 11_250);
    expect(clock.delayMs(11_250)).toBeLessThan(INTERVAL);
    clock.observe(5_000, 11_400, 11_450);
    expect(clock.delayMs(11_450)).toBe(INTERVAL);
  });

  it('ignores a manifest without a readable time', () => {
    const clock = new ManifestPollClock(INTERVAL);
    clock.observe(Number.NaN, undefined, 1_000);
    expect(clock.delayMs(1_000)).toBe(INTERVAL);
  });
});
