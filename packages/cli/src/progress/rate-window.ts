/**
 * Bytes per second over the last `windowMs` (10 s by default): recent enough for an ETA to follow a
 * change of pace, steadier than the last instant. Readings closer together than `resolutionMs`
 * replace each other, so memory stays bounded however often it is fed.
 */
export class RateWindow {
  readonly windowMs: number;
  readonly resolutionMs: number;
  #samples: Array<{ at: number; bytes: number }> = [];

  constructor(windowMs = 10_000, resolutionMs = 100) {
    this.windowMs = windowMs;
    this.resolutionMs = resolutionMs;
  }

  /** How many readings are kept: at most about windowMs / resolutionMs. */
  get readings(): number {
    return this.#samples.length;
  }

  /** A reading of a counter at time `at` (ms). A counter that goes back starts a new series. */
  record(at: number, bytes: number): void {
    const samples = this.#samples;
    if ((samples.at(-1)?.bytes ?? 0) > bytes) samples.length = 0;
    const last = samples.at(-1);
    const beforeLast = samples.at(-2);
    if (last && beforeLast && at - beforeLast.at < this.resolutionMs) {
      last.at = at;
      last.bytes = bytes;
    } else {
      samples.push({ at, bytes });
    }
    // Keep one reading at or before the window's start: the base of the rate.
    while (samples.length > 2 && (samples[1] as { at: number }).at <= at - this.windowMs) samples.shift();
  }

  /**
   * The rate over the window that ends at `now`; a counter that stopped moving decays towards 0.
   * Null before there are two readings.
   */
  bytesPerSecond(now: number): number | null {
    const samples = this.#samples;
    const last = samples.at(-1);
    if (samples.length < 2 || !last) return null;
    const start = now - this.windowMs;
    const base = samples.findLast((s) => s.at <= start) ?? (samples[0] as { at: number; bytes: number });
    const span = Math.max(now, last.at) - base.at;
    return span > 0 ? ((last.bytes - base.bytes) * 1000) / span : null;
  }
}
