import { type ObjectStore, StreamConflictError } from '@bucketpipe/core';
import { createRecord, isCount, isNonEmptyString, isTime, problemList, readRecord } from './json-record.js';
import { STREAM_RECORD_KEY, streamPrefix } from './layout.js';
import { isSnapshotRef, type SnapshotRef } from './snapshot-ref.js';

export const STREAM_RECORD_FORMAT = 'bucketpipe.series-stream';
export const STREAM_RECORD_VERSION = 1;

/**
 * What stream `seq` of a series carries: `zfs send [-i from] dataset@to`. Written once, create-only,
 * by the sender daemon before the stream's manifest; never changed.
 */
export interface StreamRecord {
  format: typeof STREAM_RECORD_FORMAT;
  version: typeof STREAM_RECORD_VERSION;
  seriesId: string;
  seq: number;
  createdAt: string;
  /** The source dataset. */
  dataset: string;
  /** The snapshot the increment starts from; null for the full stream. */
  from: SnapshotRef | null;
  to: SnapshotRef;
  /** The operator's `zfs send` flags (besides -i), e.g. ["-c", "-L"]. */
  sendFlags: string[];
  /** True for the stream that ends the series (the cut-over's). */
  final: boolean;
}

export function parseStreamRecord(v: Record<string, unknown>): { value: StreamRecord } | { problems: string[] } {
  const { problems, need } = problemList();
  need(v.format === STREAM_RECORD_FORMAT, `"format" is not "${STREAM_RECORD_FORMAT}"`);
  need(v.version === STREAM_RECORD_VERSION, `"version" must be ${STREAM_RECORD_VERSION}`);
  need(isNonEmptyString(v.seriesId), '"seriesId" must be a string');
  need(isCount(v.seq), '"seq" must be a non-negative integer');
  need(isTime(v.createdAt), '"createdAt" must be an RFC 3339 time');
  need(isNonEmptyString(v.dataset), '"dataset" must be a dataset name');
  need(v.from === null || isSnapshotRef(v.from), '"from" must be null or a snapshot (name, guid, creation)');
  need(isSnapshotRef(v.to), '"to" must be a snapshot (name, guid, creation)');
  need(Array.isArray(v.sendFlags) && v.sendFlags.every((f) => typeof f === 'string'), '"sendFlags" must be a list of strings');
  need(typeof v.final === 'boolean', '"final" must be true or false');
  need(v.seq !== 0 || v.from === null, 'stream 0 must be a full stream ("from": null)');
  return problems.length > 0 ? { problems } : { value: v as unknown as StreamRecord };
}

export async function readStreamRecord(store: ObjectStore, seq: number, signal?: AbortSignal): Promise<StreamRecord | null> {
  const found = await readRecord(store, streamPrefix(seq) + STREAM_RECORD_KEY, parseStreamRecord, signal);
  if (found && found.value.seq !== seq) {
    throw new StreamConflictError(
      'BP_SERIES_MALFORMED',
      `${store.description}/${streamPrefix(seq)}${STREAM_RECORD_KEY} says it is stream ${found.value.seq}: the series was altered by hand; it cannot be followed`,
    );
  }
  return found?.value ?? null;
}

/** Creates the record; null when one is there already (the caller reads it and decides). */
export function createStreamRecord(store: ObjectStore, record: StreamRecord, signal?: AbortSignal): Promise<string | null> {
  return createRecord(store, streamPrefix(record.seq) + STREAM_RECORD_KEY, record, signal);
}
