import { BucketpipeError, ExitCode, StreamConflictError } from '../errors.js';
import { CHUNKS_PREFIX } from '../protocol/chunk.js';
import { MANIFEST_KEY, type Manifest, parseManifest, type StreamState } from '../protocol/manifest.js';
import { listReceiverCursors, RECEIVERS_PREFIX } from '../protocol/receiver-cursor.js';
import { senderStatus, unfinishedReceivers } from '../protocol/stream-status.js';
import type { ObjectStore } from '../store/store.js';

export interface RemoveStreamOptions {
  /** Delete even while a receiver has not finished or a sender is live, or with an unreadable or absent manifest. */
  force?: boolean;
  /** Check and count, delete nothing. */
  dryRun?: boolean;
  /** Keys per delete call (default 1,000: what one S3 DeleteObjects request takes). */
  batchSize?: number;
  /** Delete calls in flight (default 4). */
  concurrency?: number;
  now?: number;
  onProgress?: (deleted: Tally) => void;
  signal?: AbortSignal;
}

export interface Tally {
  objects: number;
  bytes: number;
}

export interface RemovalSummary {
  /** null when the manifest was absent or unreadable (only with force). */
  streamId: string | null;
  state: StreamState | null;
  /** What force overrode, one phrase each. */
  overridden: string[];
  chunks: Tally;
  receivers: Tally;
  manifest: Tally;
  total: Tally;
  dryRun: boolean;
}

/**
 * Deletes a stream: every object under chunks/ and receivers/, then manifest.json last, so that an
 * interrupted removal still shows up in `ls` and `inspect` and can be run again. Only the stream's
 * own namespaces are touched: a stream nested below this one (`<root>/other/manifest.json`) stays.
 *
 * Refuses (BP_STREAM_IN_USE) while a receiver of the stream has not finished or a sender is live,
 * unless `force`. Without force a missing manifest is BP_STREAM_NOT_FOUND and an unreadable one
 * the parse error; with force both still delete whatever chunks and cursors are left.
 */
export async function removeStream(store: ObjectStore, options: RemoveStreamOptions = {}): Promise<RemovalSummary> {
  const force = options.force ?? false;
  const notFound = () =>
    new BucketpipeError(
      'BP_STREAM_NOT_FOUND',
      `no stream at ${store.description} (no manifest.json): nothing to delete; check the URL (bucketpipe ls <parent-url> lists streams)`,
      ExitCode.store,
    );
  const object = await store.get(MANIFEST_KEY, { signal: options.signal });
  if (!object && !force) throw notFound();
  const overridden: string[] = [];
  let manifest: Manifest | null = null;
  if (!object) {
    overridden.push('no manifest.json');
  } else {
    try {
      manifest = parseManifest(object.body, `${store.description}/${MANIFEST_KEY}`);
    } catch (error) {
      if (!(error instanceof StreamConflictError)) throw error;
      if (!force) throw new StreamConflictError(error.code, `${error.message}; bucketpipe rm --force deletes it anyway`, { cause: error });
      overridden.push(`unreadable manifest (${error.code})`);
    }
  }
  if (manifest) {
    const reasons = inUseReasons(manifest, await listReceiverCursors(store), options.now ?? Date.now());
    if (reasons.length > 0 && !force) {
      throw new StreamConflictError(
        'BP_STREAM_IN_USE',
        `stream ${store.description} is in use: ${reasons.join('; ')}: wait until they have finished, or delete it anyway with --force`,
      );
    }
    overridden.push(...reasons);
  }

  const total: Tally = { objects: 0, bytes: 0 };
  const deleter = new BatchDeleter(store, options, total);
  const chunks = await deleter.deleteUnder(CHUNKS_PREFIX);
  const receivers = await deleter.deleteUnder(RECEIVERS_PREFIX);
  const manifestTally: Tally = { objects: object ? 1 : 0, bytes: object?.body.length ?? 0 };
  if (object) await deleter.delete([MANIFEST_KEY], manifestTally.bytes);
  if (!object && total.objects === 0) throw notFound();
  return {
    streamId: manifest?.streamId ?? null,
    state: manifest?.state ?? null,
    overridden,
    chunks,
    receivers,
    manifest: manifestTally,
    total,
    dryRun: options.dryRun ?? false,
  };
}

/** Why the stream may not be deleted without force: a live sender, receivers that have not finished. */
function inUseReasons(manifest: Manifest, cursors: Parameters<typeof unfinishedReceivers>[1], now: number): string[] {
  const reasons: string[] = [];
  const sender = senderStatus(manifest, now);
  if (sender.live) {
    reasons.push(
      `sender ${manifest.sender.id} on ${manifest.sender.host} is still sending (heartbeat ${seconds(sender.heartbeatAgeMs)} ago)`,
    );
  }
  for (const r of unfinishedReceivers(manifest, cursors)) {
    const updated = seconds(Math.max(0, now - Date.parse(r.updatedAt)));
    reasons.push(
      `receiver ${r.receiverId} on ${r.host} has not finished (${r.state}, chunk ${r.position}/${manifest.watermark}, updated ${updated} ago)`,
    );
  }
  return reasons;
}

const seconds = (ms: number) => `${Math.round(ms / 1000)}s`;

/** Lists and deletes in batches, a few batches at a time; counts what it deleted. */
class BatchDeleter {
  readonly #store: ObjectStore;
  readonly #batchSize: number;
  readonly #concurrency: number;
  readonly #dryRun: boolean;
  readonly #options: RemoveStreamOptions;
  readonly #total: Tally;

  constructor(store: ObjectStore, options: RemoveStreamOptions, total: Tally) {
    this.#store = store;
    this.#batchSize = Math.max(1, options.batchSize ?? 1000);
    this.#concurrency = Math.max(1, options.concurrency ?? 4);
    this.#dryRun = options.dryRun ?? false;
    this.#options = options;
    this.#total = total;
  }

  async deleteUnder(prefix: string): Promise<Tally> {
    const tally: Tally = { objects: 0, bytes: 0 };
    let keys: string[] = [];
    let bytes = 0;
    for await (const item of this.#store.list(prefix, { signal: this.#options.signal })) {
      keys.push(item.key);
      bytes += item.size;
      // The listing waits while a wave is deleted: no delete is ever left running unobserved.
      if (keys.length === this.#batchSize * this.#concurrency) {
        await this.delete(keys, bytes);
        tally.objects += keys.length;
        tally.bytes += bytes;
        keys = [];
        bytes = 0;
      }
    }
    if (keys.length > 0) await this.delete(keys, bytes);
    tally.objects += keys.length;
    tally.bytes += bytes;
    return tally;
  }

  /** Deletes `keys` (`bytes` in all) in parallel batches. */
  async delete(keys: string[], bytes: number): Promise<void> {
    this.#options.signal?.throwIfAborted();
    if (!this.#dryRun) {
      const batches: string[][] = [];
      for (let i = 0; i < keys.length; i += this.#batchSize) batches.push(keys.slice(i, i + this.#batchSize));
      await Promise.all(batches.map((batch) => this.#store.delete(batch)));
    }
    this.#total.objects += keys.length;
    this.#total.bytes += bytes;
    this.#options.onProgress?.({ ...this.#total });
  }
}
