import { hostname } from 'node:os';
import { type ObjectStore, StreamConflictError } from '@bucketpipe/core';
import { createRecord, isNonEmptyString, isTime, problemList, readRecord } from './json-record.js';
import { CUTOVER_KEY } from './layout.js';

export const CUTOVER_FORMAT = 'bucketpipe.series-cutover';
export const CUTOVER_VERSION = 1;

/**
 * The operator's request to end the series now (`replicate cutover`), at `cutover.json`: a separate
 * create-only object, so that asking never races the sender daemon's writes of the series record.
 */
export interface CutoverRequest {
  format: typeof CUTOVER_FORMAT;
  version: typeof CUTOVER_VERSION;
  seriesId: string;
  requestedAt: string;
  requestedBy: string;
}

export function parseCutoverRequest(v: Record<string, unknown>): { value: CutoverRequest } | { problems: string[] } {
  const { problems, need } = problemList();
  need(v.format === CUTOVER_FORMAT, `"format" is not "${CUTOVER_FORMAT}"`);
  need(v.version === CUTOVER_VERSION, `"version" must be ${CUTOVER_VERSION}`);
  need(isNonEmptyString(v.seriesId), '"seriesId" must be a string');
  need(isTime(v.requestedAt), '"requestedAt" must be an RFC 3339 time');
  need(typeof v.requestedBy === 'string', '"requestedBy" must be a string');
  return problems.length > 0 ? { problems } : { value: v as unknown as CutoverRequest };
}

export async function readCutoverRequest(store: ObjectStore, seriesId: string, signal?: AbortSignal): Promise<CutoverRequest | null> {
  const found = await readRecord(store, CUTOVER_KEY, parseCutoverRequest, signal);
  return found && found.value.seriesId === seriesId ? found.value : null;
}

/** Files the request; an earlier request for this series stands (and is returned). */
export async function requestCutover(store: ObjectStore, seriesId: string, signal?: AbortSignal): Promise<CutoverRequest> {
  const request: CutoverRequest = {
    format: CUTOVER_FORMAT,
    version: CUTOVER_VERSION,
    seriesId,
    requestedAt: new Date().toISOString(),
    requestedBy: hostname(),
  };
  if ((await createRecord(store, CUTOVER_KEY, request, signal)) !== null) return request;
  const existing = await readCutoverRequest(store, seriesId, signal);
  if (existing) return existing;
  // Left by an earlier series at this URL (removed since): this series has no request yet.
  await store.delete([CUTOVER_KEY]);
  if ((await createRecord(store, CUTOVER_KEY, request, signal)) !== null) return request;
  const now = await readCutoverRequest(store, seriesId, signal);
  if (now) return now;
  throw new StreamConflictError(
    'BP_CUTOVER_CONFLICT',
    `${store.description}/${CUTOVER_KEY} belongs to another series and could not be replaced: remove it, then run the cut-over again`,
  );
}
