import type { ObjectStore } from '@bucketpipe/core';
import { decodeRecord, encodeRecord, isCount, isNonEmptyString, isTime, problemList } from './json-record.js';
import { SERIES_RECEIVERS_PREFIX, seriesReceiverKey } from './layout.js';

export const SERIES_RECEIVER_FORMAT = 'bucketpipe.series-receiver';
export const SERIES_RECEIVER_VERSION = 1;

export type SeriesReceiverState = 'waiting' | 'receiving' | 'done' | 'failed';

/** A stream the receiver has applied: its to-snapshot is on the target. */
export interface AppliedStream {
  seq: number;
  snapshot: string;
  guid: string;
  /** The snapshot's creation time (unix seconds): replication lag is now minus this. */
  creation: number;
  /** When the receiver saw it on the target. */
  at: string;
}

/**
 * Where a receiver daemon stands, at `receivers/<id>.json` of the series; written only by that
 * receiver (plain puts). The target's own snapshots are the truth; this is what others can see of them.
 */
export interface SeriesReceiverRecord {
  format: typeof SERIES_RECEIVER_FORMAT;
  version: typeof SERIES_RECEIVER_VERSION;
  seriesId: string;
  receiverId: string;
  host: string;
  /** The target dataset. */
  dataset: string;
  state: SeriesReceiverState;
  /** The newest applied stream; null before the first. */
  applied: AppliedStream | null;
  /** The stream being applied now, with state `receiving`. */
  receiving?: number;
  updatedAt: string;
  /** With state `failed`: one line saying why. */
  error?: string;
  /** `replicate receive --delete-applied`: the chunks of streams 0 … deletedThrough are deleted (every receiver had applied them). */
  deletedThrough?: number;
}

export function parseSeriesReceiver(v: Record<string, unknown>): { value: SeriesReceiverRecord } | { problems: string[] } {
  const { problems, need } = problemList();
  need(v.format === SERIES_RECEIVER_FORMAT, `"format" is not "${SERIES_RECEIVER_FORMAT}"`);
  need(v.version === SERIES_RECEIVER_VERSION, `"version" must be ${SERIES_RECEIVER_VERSION}`);
  need(
    isNonEmptyString(v.seriesId) && isNonEmptyString(v.receiverId) && typeof v.host === 'string',
    '"seriesId", "receiverId" and "host" must be strings',
  );
  need(isNonEmptyString(v.dataset), '"dataset" must be a dataset name');
  need(['waiting', 'receiving', 'done', 'failed'].includes(v.state as string), '"state" must be waiting, receiving, done or failed');
  const a = v.applied as Record<string, unknown> | null | undefined;
  need(
    a === null ||
      (typeof a === 'object' &&
        a !== undefined &&
        isCount(a.seq) &&
        isNonEmptyString(a.snapshot) &&
        typeof a.guid === 'string' &&
        isCount(a.creation) &&
        isTime(a.at)),
    '"applied" must be null or have seq, snapshot, guid, creation and at',
  );
  need(v.receiving === undefined || isCount(v.receiving), '"receiving" must be a stream number');
  need(isTime(v.updatedAt), '"updatedAt" must be an RFC 3339 time');
  need(v.deletedThrough === undefined || isCount(v.deletedThrough), '"deletedThrough" must be a stream number');
  return problems.length > 0 ? { problems } : { value: v as unknown as SeriesReceiverRecord };
}

export async function writeSeriesReceiver(store: ObjectStore, record: SeriesReceiverRecord, signal?: AbortSignal): Promise<void> {
  await store.put(seriesReceiverKey(record.receiverId), encodeRecord(record), { signal });
}

export async function readSeriesReceiver(
  store: ObjectStore,
  receiverId: string,
  signal?: AbortSignal,
): Promise<SeriesReceiverRecord | null> {
  const object = await store.get(seriesReceiverKey(receiverId), { signal });
  return object ? decodeRecord(object.body, `${store.description}/${seriesReceiverKey(receiverId)}`, parseSeriesReceiver) : null;
}

/** Every receiver registered with the series, in id order; records of another series are left out. */
export async function listSeriesReceivers(store: ObjectStore, seriesId: string, signal?: AbortSignal): Promise<SeriesReceiverRecord[]> {
  const records: SeriesReceiverRecord[] = [];
  for await (const { key } of store.list(SERIES_RECEIVERS_PREFIX, { signal })) {
    if (!key.endsWith('.json')) continue;
    const object = await store.get(key, { signal });
    if (!object) continue; // removed since the listing
    const record = decodeRecord(object.body, `${store.description}/${key}`, parseSeriesReceiver);
    if (record.seriesId === seriesId) records.push(record);
  }
  return records;
}
