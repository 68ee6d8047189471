import { setTimeout as sleep } from 'node:timers/promises';
import { listReceiverCursors, type ReceiverCursor } from '../protocol/receiver-cursor.js';
import { type RetryPolicy, withRetry } from '../store/retry.js';
import type { ObjectStore } from '../store/store.js';

/** How often the cursors are read while the gate holds: receivers publish at most once a second. */
export const DEFAULT_LAG_POLL_MS = 1000;
/** A receiver that holds the sender back and whose cursor has not changed for this long is ignored (dead or stuck). */
export const DEFAULT_RECEIVER_STALE_AFTER_MS = 60_000;
/** How long the gate holds, as if a receiver were at chunk 0, while no receiver of the stream has registered. */
export const DEFAULT_FIRST_RECEIVER_WAIT_MS = 10_000;

/** The --max-lag settings of a send; see LagGate. */
export interface LagLimit {
  /** Chunks at most from the slowest active receiver's position to the next chunk read (≥ 1). */
  maxLag: number;
  pollIntervalMs?: number;
  staleAfterMs?: number;
  /** How long to hold for a first receiver to register (0: not at all). */
  firstReceiverWaitMs?: number;
  /** What the gate waits for, whenever that changes; null when it no longer waits. */
  onWait?: (wait: LagWait | null) => void;
  /** A receiver ignored as stale (and back), no receiver registered in time. */
  onWarning?: (message: string) => void;
  /** For tests. */
  now?: () => number;
}

export interface LagWait {
  /** The receiver that holds the sender back; null while waiting for a first receiver to register. */
  receiverId: string | null;
  /** Its position: the next chunk it needs. */
  position: number;
  /** The chunk the sender would read next. */
  next: number;
  /** `next − position`: chunks read, in flight or stored beyond the receiver's position. */
  behind: number;
}

interface Seen {
  /** The cursor's updatedAt and position as last read: a change of either means the receiver is alive. */
  version: string;
  /** When the gate began waiting on this version of the cursor (this machine's clock), or null when it does not wait on it. */
  waitingSince: number | null;
  stale: boolean;
}

/**
 * Lag-aware backpressure for the sender (`send --max-lag`). Before it reads chunk `next` from the
 * source, the sender calls `admit(next)`, which returns once `next − slowest < maxLag`, where
 * `slowest` is the smallest position among the stream's active receivers (cursors of this stream
 * id, not `done` or `failed`, not stale). Because chunks are gated before they are read, every
 * chunk read, compressing, uploading or stored is within the window: the chunk objects at or
 * above the slowest position never number more than `maxLag`.
 *
 * - The cursors are read (one listing of `receivers/` and a GET per cursor) only when the last
 *   reading would hold the sender back, and then at most once per poll interval; while no
 *   receiver is registered, once per poll interval.
 * - No receiver registered: the gate holds as if one were at chunk 0 for `firstReceiverWaitMs`
 *   from the first admit, then lets the sender go on without a bound (one warning) until a
 *   receiver registers. A receiver that registers later, far behind, holds the sender until it is
 *   within the window again.
 * - Stale: a receiver holding the sender back whose cursor (updatedAt, position) does not change
 *   for `staleAfterMs` while the gate waits on it is ignored with a warning, until its cursor
 *   changes again. Only this machine's clock is used, so clock skew between machines does not
 *   matter, and a receiver idle at the watermark (its cursor unchanged because it has nothing to
 *   do) is not taken for dead.
 */
export class LagGate {
  #store: ObjectStore;
  #streamId: string;
  #limit: Required<Omit<LagLimit, 'onWait' | 'onWarning'>> & Pick<LagLimit, 'onWait' | 'onWarning'>;
  #retry: RetryPolicy | undefined;
  #readAt = Number.NEGATIVE_INFINITY;
  #firstAdmitAt: number | undefined;
  #slowest: { receiverId: string; position: number } | null = null;
  #seen = new Map<string, Seen>();
  #wait: LagWait | null = null;
  #warnedNoReceiver = false;

  constructor(store: ObjectStore, streamId: string, limit: LagLimit, retry?: RetryPolicy) {
    if (!Number.isSafeInteger(limit.maxLag) || limit.maxLag < 1)
      throw new RangeError(`max lag must be a positive number of chunks, got ${limit.maxLag}`);
    this.#store = store;
    this.#streamId = streamId;
    this.#retry = retry;
    this.#limit = {
      ...limit,
      pollIntervalMs: limit.pollIntervalMs ?? DEFAULT_LAG_POLL_MS,
      staleAfterMs: limit.staleAfterMs ?? DEFAULT_RECEIVER_STALE_AFTER_MS,
      firstReceiverWaitMs: limit.firstReceiverWaitMs ?? DEFAULT_FIRST_RECEIVER_WAIT_MS,
      now: limit.now ?? Date.now,
    };
  }

  /** The slowest active receiver at the last reading (null: none). */
  get slowest(): Readonly<{ receiverId: string; position: number }> | null {
    return this.#slowest;
  }

  /** Resolves when chunk `next` may be read; rejects with the signal's reason when aborted. */
  async admit(next: number, signal?: AbortSignal): Promise<void> {
    const { now, pollIntervalMs } = this.#limit;
    this.#firstAdmitAt ??= now();
    for (;;) {
      signal?.throwIfAborted();
      const readDue = now() - this.#readAt >= pollIntervalMs;
      const holder = this.#holder(next);
      if (holder === null && (this.#slowest !== null || !readDue)) {
        this.#setWait(null);
        return;
      }
      if (readDue) {
        await this.#read(next, signal);
        continue;
      }
      if (holder !== null) this.#setWait({ ...holder, next, behind: next - holder.position });
      const delay = Math.max(1, this.#readAt + pollIntervalMs - now());
      await sleep(delay, undefined, { signal }).catch((error: unknown) => {
        throw signal?.aborted ? signal.reason : error;
      });
    }
  }

  /** Who holds chunk `next` back according to the last reading, or null when it may be read. */
  #holder(next: number): { receiverId: string | null; position: number } | null {
    const { maxLag, firstReceiverWaitMs, now } = this.#limit;
    if (this.#slowest !== null) return next - this.#slowest.position >= maxLag ? this.#slowest : null;
    const waitingForFirst = now() - (this.#firstAdmitAt ?? now()) < firstReceiverWaitMs;
    if (waitingForFirst) return next >= maxLag ? { receiverId: null, position: 0 } : null;
    if (!this.#warnedNoReceiver && next >= maxLag) {
      this.#warnedNoReceiver = true;
      this.#limit.onWarning?.(
        `no receiver of this stream has registered within ${seconds(firstReceiverWaitMs)}: sending on without the --max-lag bound until one does`,
      );
    }
    return null;
  }

  async #read(next: number, signal: AbortSignal | undefined): Promise<void> {
    const cursors = await withRetry(() => listReceiverCursors(this.#store), { policy: this.#retry, signal });
    const now = this.#limit.now();
    this.#readAt = now;
    const active = cursors.filter((c) => c.streamId === this.#streamId && (c.state === 'waiting' || c.state === 'receiving'));
    const present = new Set(active.map((c) => c.receiverId));
    for (const id of this.#seen.keys()) if (!present.has(id)) this.#seen.delete(id);
    for (const cursor of active) this.#observe(cursor);
    let slowest: { receiverId: string; position: number } | null = null;
    for (const c of active) {
      if (this.#seen.get(c.receiverId)?.stale) continue;
      if (slowest === null || c.position < slowest.position) slowest = { receiverId: c.receiverId, position: c.position };
    }
    this.#slowest = slowest;
    // The clock of staleness runs only while the gate waits on a receiver, from the reading that first saw this version of its cursor hold the sender.
    const holding = slowest !== null && next - slowest.position >= this.#limit.maxLag ? slowest.receiverId : null;
    for (const [id, seen] of this.#seen) {
      if (id === holding) seen.waitingSince ??= now;
      else if (!seen.stale) seen.waitingSince = null;
    }
    const stale = holding === null ? undefined : this.#seen.get(holding);
    if (slowest !== null && stale !== undefined && stale.waitingSince !== null && now - stale.waitingSince >= this.#limit.staleAfterMs) {
      stale.stale = true;
      this.#limit.onWarning?.(
        `receiver ${slowest.receiverId} (chunk ${slowest.position}) has not moved for ${seconds(this.#limit.staleAfterMs)} while the sender waited for it: ignoring it for --max-lag until its position changes`,
      );
      this.#readAt = Number.NEGATIVE_INFINITY; // decide again at once without it
    }
  }

  #observe(cursor: ReceiverCursor): void {
    const version = `${cursor.updatedAt} ${cursor.position}`;
    const seen = this.#seen.get(cursor.receiverId);
    if (seen === undefined) {
      this.#seen.set(cursor.receiverId, { version, waitingSince: null, stale: false });
      return;
    }
    if (seen.version === version) return;
    if (seen.stale)
      this.#limit.onWarning?.(`receiver ${cursor.receiverId} moves again (chunk ${cursor.position}): --max-lag counts it again`);
    this.#seen.set(cursor.receiverId, { version, waitingSince: null, stale: false });
  }

  #setWait(wait: LagWait | null): void {
    const same =
      wait === this.#wait ||
      (wait !== null &&
        this.#wait !== null &&
        wait.receiverId === this.#wait.receiverId &&
        wait.position === this.#wait.position &&
        wait.next === this.#wait.next);
    this.#wait = wait;
    if (!same) this.#limit.onWait?.(wait);
  }
}

function seconds(ms: number): string {
  return ms < 10_000 ? `${Number((ms / 1000).toFixed(2))}s` : `${Math.round(ms / 1000)}s`;
}
