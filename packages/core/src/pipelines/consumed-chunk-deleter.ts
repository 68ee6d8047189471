import { CHUNKS_PREFIX, chunkKey, parseChunkKey } from '../protocol/chunk.js';
import { listReceiverCursors } from '../protocol/receiver-cursor.js';
import { type RetryPolicy, withRetry } from '../store/retry.js';
import { type ObjectStore, StoreError } from '../store/store.js';

/** A deletion pass is due once this many consumed chunks wait for it… */
export const DEFAULT_DELETE_EVERY_CHUNKS = 16;
/** …or once this long has passed since the last pass and at least one does. */
export const DEFAULT_DELETE_INTERVAL_MS = 2000;
/** Keys per delete call: what one S3 DeleteObjects request takes. */
const DELETE_BATCH = 1000;

export interface ConsumedChunkDeleterOptions {
  streamId: string;
  /** This receiver's id: its own cursor is replaced by the position it is given, never read. */
  receiverId: string;
  everyChunks?: number;
  intervalMs?: number;
  retry?: RetryPolicy;
  signal?: AbortSignal;
  onWarning?: (message: string) => void;
  /** For tests. */
  now?: () => number;
}

/**
 * Deletes the chunk objects a receiver's sink has taken (`receive --delete-consumed`), in batches,
 * in the background, never manifest.json nor the cursors. A pass deletes the chunks below
 * `min(own position, positions of the stream's other active receivers)`: cursors of this stream
 * id in state `waiting` or `receiving` — stale or not, since a chunk deleted under a receiver
 * cannot be brought back, while one kept too long only costs space. A relay reading the stream
 * writes no cursor and is not protected (FORMAT.md §7.3).
 *
 * Deleting is cleanup, not part of the transfer: a pass that fails (after retries) is a warning
 * and the next pass tries again; a store that refuses deletes (auth) turns it off.
 */
export class ConsumedChunkDeleter {
  readonly #store: ObjectStore;
  readonly #options: ConsumedChunkDeleterOptions;
  readonly #everyChunks: number;
  readonly #intervalMs: number;
  readonly #now: () => number;
  #position = 0;
  /** Every chunk below this index is known to be deleted (or never was stored); null before the first pass looked. */
  #deletedBelow: number | null = null;
  #lastPassAt: number;
  #pass: Promise<void> | undefined;
  #disabled = false;
  #deleted = 0;

  constructor(store: ObjectStore, options: ConsumedChunkDeleterOptions) {
    this.#store = store;
    this.#options = options;
    this.#everyChunks = Math.max(1, options.everyChunks ?? DEFAULT_DELETE_EVERY_CHUNKS);
    this.#intervalMs = options.intervalMs ?? DEFAULT_DELETE_INTERVAL_MS;
    this.#now = options.now ?? Date.now;
    this.#lastPassAt = this.#now();
  }

  /** Chunk objects deleted so far. */
  get deleted(): number {
    return this.#deleted;
  }

  /** The sink has taken every chunk below `position`; starts a pass in the background when one is due. */
  consumed(position: number): void {
    this.#position = Math.max(this.#position, position);
    if (this.#pass || this.#disabled) return;
    const pending = this.#position - (this.#deletedBelow ?? 0);
    if (pending <= 0) return;
    if (pending < this.#everyChunks && this.#now() - this.#lastPassAt < this.#intervalMs) return;
    this.#pass = this.#runPass().finally(() => {
      this.#pass = undefined;
    });
  }

  /** Waits for the pass in flight, then, with `finalPosition`, deletes up to it (the stream is complete and the sink finished). */
  async finish(finalPosition?: number): Promise<void> {
    await this.#pass;
    if (finalPosition === undefined || this.#disabled) return;
    this.#position = Math.max(this.#position, finalPosition);
    await this.#runPass();
  }

  async #runPass(): Promise<void> {
    this.#lastPassAt = this.#now();
    const { retry, signal } = this.#options;
    try {
      const below = await withRetry(() => this.#limit(), { policy: retry, signal });
      const from = this.#deletedBelow ?? (await withRetry(() => this.#firstStored(), { policy: retry, signal }));
      this.#deletedBelow = from;
      for (let first = from; first < below; first += DELETE_BATCH) {
        const keys: string[] = [];
        for (let i = first; i < Math.min(below, first + DELETE_BATCH); i++) keys.push(chunkKey(i));
        signal?.throwIfAborted();
        await withRetry(() => this.#store.delete(keys), { policy: retry, signal });
        this.#deleted += keys.length;
        this.#deletedBelow = first + keys.length;
      }
    } catch (error) {
      if (signal?.aborted) return;
      const message = error instanceof Error ? error.message : String(error);
      if (error instanceof StoreError && error.kind === 'auth') {
        this.#disabled = true;
        this.#options.onWarning?.(`cannot delete consumed chunks from ${this.#store.description} (${message}): keeping them`);
      } else {
        this.#options.onWarning?.(`deleting consumed chunks from ${this.#store.description} failed (${message}): trying again later`);
      }
    }
  }

  /** Chunks below this index may go: the smallest position of this and the other active receivers of the stream. */
  async #limit(): Promise<number> {
    let below = this.#position;
    for (const cursor of await listReceiverCursors(this.#store)) {
      if (cursor.receiverId === this.#options.receiverId || cursor.streamId !== this.#options.streamId) continue;
      if (cursor.state !== 'waiting' && cursor.state !== 'receiving') continue;
      below = Math.min(below, cursor.position);
    }
    return below;
  }

  /** The lowest chunk still stored (a receive resumed or restarted after an earlier one deleted the chunks before it). */
  async #firstStored(): Promise<number> {
    for await (const item of this.#store.list(CHUNKS_PREFIX, { signal: this.#options.signal })) {
      const index = parseChunkKey(item.key);
      if (index !== null) return index;
    }
    return this.#position;
  }
}
