import { isProcessIdentity, type ObjectStore, type SenderInfo } from '@bucketpipe/core';
import { createRecord, isCount, isNonEmptyString, isTime, problemList, readRecord, replaceRecord, type Versioned } from './json-record.js';
import { SERIES_KEY } from './layout.js';
import { isSnapshotRef, type SnapshotRef } from './snapshot-ref.js';

export const SERIES_FORMAT = 'bucketpipe.series';
export const SERIES_VERSION = 1;

/** The sender daemon, as a stream's manifest names its sender (host, pid, process identity, heartbeat). */
export type SeriesSender = SenderInfo;

/**
 * The one mutable object of a series: which streams exist, which is final, who sends. Its size
 * does not grow with the number of streams; what is known of each stream lives beside it
 * (`streams/<seq>/replication.json`).
 */
export interface SeriesRecord {
  format: typeof SERIES_FORMAT;
  version: typeof SERIES_VERSION;
  seriesId: string;
  createdAt: string;
  updatedAt: string;
  /** The source dataset, e.g. `tank/pgdata`. */
  dataset: string;
  sender: SeriesSender;
  /** Streams 0 … streams − 1 exist (each has its replication.json and manifest). */
  streams: number;
  /** The source's newest snapshot when the sender last looked (its heartbeat), for `inspect`. */
  sourceNewest?: SnapshotRef;
  /** Set once, with the stream that ends the series (the cut-over's); nothing is added after it. */
  final?: { seq: number; snapshot: string; at: string };
}

export function parseSeriesRecord(v: Record<string, unknown>): { value: SeriesRecord } | { problems: string[] } {
  const { problems, need } = problemList();
  need(v.format === SERIES_FORMAT, `"format" is not "${SERIES_FORMAT}"`);
  need(v.version === SERIES_VERSION, `"version" must be ${SERIES_VERSION}`);
  need(isNonEmptyString(v.seriesId), '"seriesId" must be a string');
  need(isTime(v.createdAt) && isTime(v.updatedAt), '"createdAt"/"updatedAt" must be RFC 3339 times');
  need(isNonEmptyString(v.dataset), '"dataset" must be a dataset name');
  const s = v.sender as Record<string, unknown> | undefined;
  need(
    typeof s === 'object' && s !== null && isNonEmptyString(s.id) && isNonEmptyString(s.host) && isCount(s.pid) && isTime(s.heartbeatAt),
    '"sender" must have id, host, pid and heartbeatAt',
  );
  need(
    s === undefined || s === null || s.process === undefined || isProcessIdentity(s.process),
    '"sender.process" must have a bootId and a decimal startTime',
  );
  need(isCount(v.streams), '"streams" must be a non-negative integer');
  need(v.sourceNewest === undefined || isSnapshotRef(v.sourceNewest), '"sourceNewest" must be a snapshot (name, guid, creation)');
  const f = v.final as Record<string, unknown> | undefined;
  need(
    f === undefined || (typeof f === 'object' && f !== null && isCount(f.seq) && isNonEmptyString(f.snapshot) && isTime(f.at)),
    '"final" must have seq, snapshot and at',
  );
  if (f !== undefined && isCount(v.streams) && isCount(f?.seq)) need(f.seq === v.streams - 1, '"final.seq" must be the last stream');
  return problems.length > 0 ? { problems } : { value: v as unknown as SeriesRecord };
}

export function readSeries(store: ObjectStore, signal?: AbortSignal): Promise<Versioned<SeriesRecord> | null> {
  return readRecord(store, SERIES_KEY, parseSeriesRecord, signal);
}

export function createSeries(store: ObjectStore, record: SeriesRecord, signal?: AbortSignal): Promise<string | null> {
  return createRecord(store, SERIES_KEY, record, signal);
}

export function replaceSeries(store: ObjectStore, record: SeriesRecord, etag: string, signal?: AbortSignal): Promise<string | null> {
  return replaceRecord(store, SERIES_KEY, record, etag, signal);
}
