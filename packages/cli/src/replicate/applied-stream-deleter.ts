import { CHUNKS_PREFIX, type ObjectStore, PrefixedStore, type RetryPolicy, withRetry } from '@bucketpipe/core';
import { listSeriesReceivers, streamPrefix } from '@bucketpipe/replication';

const DELETE_BATCH = 1000;

/**
 * `replicate receive --delete-applied`: deletes the chunk objects of the streams every registered
 * receiver of the series has applied — their manifests, stream records and cursors stay, so
 * `inspect` still shows them. Returns the highest stream whose chunks are now deleted.
 */
export async function deleteAppliedStreams(options: {
  store: ObjectStore;
  seriesId: string;
  /** Streams 0 … deletedThrough were deleted before (the receiver's record); −1 for none. */
  deletedThrough: number;
  retry?: RetryPolicy;
  signal: AbortSignal;
}): Promise<{ deletedThrough: number; chunks: number }> {
  const { store, signal } = options;
  const retry = { policy: options.retry, signal };
  const receivers = await withRetry(() => listSeriesReceivers(store, options.seriesId, signal), retry);
  const appliedByAll = receivers.length === 0 ? -1 : Math.min(...receivers.map((r) => r.applied?.seq ?? -1));
  let chunks = 0;
  for (let seq = options.deletedThrough + 1; seq <= appliedByAll; seq++) {
    const stream = new PrefixedStore(store, streamPrefix(seq));
    let batch: string[] = [];
    const flush = async () => {
      const keys = batch;
      batch = [];
      if (keys.length > 0) await withRetry(() => stream.delete(keys), retry);
      chunks += keys.length;
    };
    for await (const { key } of stream.list(CHUNKS_PREFIX, { signal })) {
      batch.push(key);
      if (batch.length >= DELETE_BATCH) await flush();
    }
    await flush();
  }
  return { deletedThrough: Math.max(options.deletedThrough, appliedByAll), chunks };
}
