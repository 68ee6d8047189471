/**
 * When a receiver reads the manifest of a live stream next, locked to its sender's rhythm.
 *
 * A sender rewrites its manifest at most once per manifest interval, and a receiver polling on a
 * clock of its own learns of each write up to a poll interval later: on average half an interval
 * of lag, paid again whenever the receiver waits for the sender.
 *
 * Each manifest says when it was written (`updatedAt`, the sender's clock): two writes seen in a
 * row give the sender's period. What the two clocks do not share is the offset: the local time at
 * which a write becomes readable, minus its `updatedAt` (the clocks' difference plus the time the
 * write takes). Every read bounds it: one that sees a write for the first time from above (it was
 * readable when the read completed), the read before it from below (not yet readable when that
 * read was sent). The next read is aimed between the bounds while they are far apart, which
 * narrows them whether it finds the write or not, and just after the upper bound once they are
 * close. It is never later than a poll interval after the last read, and a sender that keeps no
 * rhythm (idle, slower than the poll interval, its clock stepped, another writer) is read once a
 * poll interval, as a fixed clock would.
 */
export class ManifestPollClock {
  #low = Number.NEGATIVE_INFINITY;
  #high = Number.POSITIVE_INFINITY;
  #lastUpdatedAt: number | undefined;
  #periodMs: number | undefined;
  /** When the latest read that saw the last write was sent: after it, the next write became readable. */
  #lastReadSentAt: number | undefined;
  /** The sender time of the write the last timed read was aimed at. */
  #aimedAt = 0;
  #lastWasTimed = false;
  #missedTimed = false;
  #misses = 0;

  constructor(private readonly pollIntervalMs: number) {}

  /**
   * A read of the manifest, sent at local time `sentAt` (undefined: not known) and completed at
   * `seenAt`, found the version written at `updatedAt` on the sender's clock.
   */
  observe(updatedAt: number, sentAt: number | undefined, seenAt: number): void {
    if (!Number.isFinite(updatedAt)) return;
    const last = this.#lastUpdatedAt;
    const isNew = last === undefined || updatedAt !== last;
    this.#missedTimed = this.#lastWasTimed && !isNew;
    this.#lastWasTimed = false;
    if (isNew) this.#learn(updatedAt, last, seenAt);
    this.#lastReadSentAt = sentAt;
  }

  /** Milliseconds from `now` until the next read. */
  delayMs(now: number): number {
    const interval = this.pollIntervalMs;
    const missed = this.#missedTimed;
    this.#missedTimed = false;
    this.#lastWasTimed = false;
    this.#misses = missed ? this.#misses + 1 : 0;
    const period = this.#periodMs;
    const last = this.#lastUpdatedAt;
    if (period === undefined || last === undefined || !Number.isFinite(this.#high)) return interval;
    let readAt: number;
    if (this.#misses === 0) {
      // Not bounded from below yet: the read before came at most a poll interval earlier.
      const low = Math.max(this.#low, this.#high - interval);
      const spread = this.#high - low;
      const offset = spread > 2 * MARGIN_MS ? low + spread / 2 : this.#high + MARGIN_MS;
      // Past already (the read that saw the last write came late): the next write is a period on.
      let due = last + period;
      while (due + offset <= now) due += period;
      this.#aimedAt = due;
      readAt = due + offset;
    } else if (this.#misses === 1) {
      // The write is later than aimed at: read again at the upper bound, or soon if that is past.
      readAt = Math.max(this.#aimedAt + this.#high + MARGIN_MS, now + RETRY_MS);
    } else {
      // Later than both: the sender wrote nothing (nothing changed) or keeps no rhythm. Until two
      // writes are seen in a row again, read once a poll interval.
      this.#periodMs = undefined;
      return interval;
    }
    const delay = readAt - now;
    if (delay >= interval) return interval;
    this.#lastWasTimed = true;
    return Math.max(MIN_DELAY_MS, delay);
  }

  #learn(updatedAt: number, last: number | undefined, seenAt: number): void {
    if (last !== undefined && updatedAt < last) {
      // Another writer (a takeover) or a clock stepped back: what was learnt no longer holds.
      this.#low = Number.NEGATIVE_INFINITY;
      this.#high = Number.POSITIVE_INFINITY;
      this.#periodMs = undefined;
      this.#lastReadSentAt = undefined;
    } else if (last !== undefined) {
      const gap = updatedAt - last;
      // A gap of several periods (a read missed a write, or the sender idled) is no period.
      this.#periodMs = gap <= PERIOD_LIMIT * this.pollIntervalMs ? gap : undefined;
    }
    // Each write loosens both bounds a little, so that they follow a write time that drifts.
    this.#high = Math.min(this.#high + DRIFT_MS, seenAt - updatedAt);
    if (this.#lastReadSentAt !== undefined) this.#low = Math.max(this.#low - DRIFT_MS, this.#lastReadSentAt - updatedAt);
    // Writes take more or less time: bounds from two of them may cross. The upper one is safe.
    if (this.#low > this.#high) this.#low = this.#high - MARGIN_MS;
    this.#lastUpdatedAt = updatedAt;
  }
}

/** A read aimed at the upper bound comes this much after it: a write's duration jitters. */
const MARGIN_MS = 50;
/** The soonest retry of a timed read that found nothing new. */
const RETRY_MS = 150;
const MIN_DELAY_MS = 20;
/** How far both bounds of the offset loosen per write seen. */
const DRIFT_MS = 10;
/** The longest gap between two writes, in poll intervals, taken as the sender's period. */
const PERIOD_LIMIT = 1.5;
