import { listReceiverCursors, type ObjectStore } from '@bucketpipe/core';

/**
 * When chunks became available, as (watermark, time) steps: at `at` (performance.now() ms), every
 * chunk below `watermark` was there. Steps less than a second apart are merged, so a stream of
 * millions of chunks keeps at most one step per second of transfer.
 */
export class WatermarkLog {
  readonly #steps: { watermark: number; at: number }[] = [];
  #first = 0;

  advance(watermark: number, now = performance.now()): void {
    const last = this.#steps.at(-1);
    if (last && watermark <= last.watermark) return;
    if (last && now - last.at < 1000) last.watermark = watermark;
    else this.#steps.push({ watermark, at: now });
  }

  get watermark(): number {
    return this.#steps.at(-1)?.watermark ?? 0;
  }

  /** When chunk `index` became available, as far as this log knows; undefined if it has not. */
  availableSince(index: number): number | undefined {
    let low = this.#first;
    let high = this.#steps.length;
    while (low < high) {
      const middle = (low + high) >>> 1;
      if ((this.#steps[middle] as { watermark: number }).watermark > index) high = middle;
      else low = middle + 1;
    }
    return this.#steps[low]?.at;
  }

  /** Forgets the steps every one of whose chunks is below `position` (a follower that only moves forward). */
  forgetBelow(position: number): void {
    while (this.#first < this.#steps.length - 1 && (this.#steps[this.#first] as { watermark: number }).watermark <= position) this.#first++;
    if (this.#first > 1024) {
      this.#steps.splice(0, this.#first);
      this.#first = 0;
    }
  }
}

export interface Lag {
  chunks: number;
  seconds: number;
}

/** How far `position` is behind the log: chunks, and the age of the oldest chunk not yet taken. */
export function lagBehind(log: WatermarkLog, position: number, now = performance.now()): Lag {
  const chunks = Math.max(0, log.watermark - position);
  if (chunks === 0) return { chunks: 0, seconds: 0 };
  const since = log.availableSince(position);
  return { chunks, seconds: since === undefined ? 0 : Math.max(0, (now - since) / 1000) };
}

/**
 * The lag of the receivers following a stream, from their cursors (receivers/<id>.json, which each
 * receiver rewrites about once a second): read at most every `maxAgeMs`, when scraped, so that a
 * process nobody scrapes makes no extra requests.
 */
export class ReceiverCursorLag {
  readonly #store: ObjectStore;
  readonly #maxAgeMs: number;
  #readAt = Number.NEGATIVE_INFINITY;
  #reading: Promise<void> | undefined;
  #positions = new Map<string, { position: number; done: boolean }>();

  constructor(store: ObjectStore, maxAgeMs = 2000) {
    this.#store = store;
    this.#maxAgeMs = maxAgeMs;
  }

  /** The receivers of `streamId` and their lag behind `log`; waits at most `waitMs` for a fresh read. */
  async lags(streamId: string, log: WatermarkLog, waitMs = 2000): Promise<Map<string, Lag>> {
    if (performance.now() - this.#readAt > this.#maxAgeMs) {
      this.#reading ??= this.#read(streamId).finally(() => {
        this.#reading = undefined;
      });
      let timer: NodeJS.Timeout | undefined;
      const timeout = new Promise<void>((resolve) => {
        timer = setTimeout(resolve, waitMs);
      });
      // A store error keeps the last positions: the lag is a view, never a reason to fail.
      await Promise.race([this.#reading.catch(() => {}), timeout]);
      clearTimeout(timer);
    }
    const now = performance.now();
    const lags = new Map<string, Lag>();
    for (const [receiver, { position, done }] of this.#positions) {
      lags.set(receiver, done ? { chunks: 0, seconds: 0 } : lagBehind(log, position, now));
    }
    return lags;
  }

  async #read(streamId: string): Promise<void> {
    const cursors = await listReceiverCursors(this.#store);
    const positions = new Map<string, { position: number; done: boolean }>();
    for (const cursor of cursors) {
      if (cursor.streamId !== streamId || typeof cursor.position !== 'number') continue;
      positions.set(cursor.receiverId, { position: cursor.position, done: cursor.state === 'done' });
    }
    this.#positions = positions;
    this.#readAt = performance.now();
  }
}
