import { isRfc3339Time, type ObjectStore, parseJsonObject, putIfAbsent, putIfMatch, StreamConflictError } from '@bucketpipe/core';

/** A record as read, with the ETag a compare-and-swap must match. */
export interface Versioned<T> {
  value: T;
  etag: string;
}

/** Turns parsed JSON into a record, or lists what is wrong with it. */
export type RecordParser<T> = (value: Record<string, unknown>) => { value: T } | { problems: string[] };

export function encodeRecord(value: unknown): Uint8Array {
  return Buffer.from(`${JSON.stringify(value, null, 2)}\n`);
}

/** Reads and validates a JSON record; null when absent. A malformed one is a one-line BP_SERIES_MALFORMED. */
export async function readRecord<T>(
  store: ObjectStore,
  key: string,
  parse: RecordParser<T>,
  signal?: AbortSignal,
): Promise<Versioned<T> | null> {
  const object = await store.get(key, { signal });
  if (!object) return null;
  return { value: decodeRecord(object.body, `${store.description}/${key}`, parse), etag: object.etag };
}

export function decodeRecord<T>(bytes: Uint8Array, where: string, parse: RecordParser<T>): T {
  const malformed = (what: string) =>
    new StreamConflictError('BP_SERIES_MALFORMED', `${where} is malformed (${what}): it was not written by bucketpipe or is damaged`);
  const value = parseJsonObject(bytes, malformed);
  const parsed = parse(value);
  if ('problems' in parsed) throw malformed(parsed.problems.join('; '));
  return parsed.value;
}

/** Creates the record only where there is none (putIfAbsent): its ETag, or null when another one is there. */
export async function createRecord(store: ObjectStore, key: string, value: unknown, signal?: AbortSignal): Promise<string | null> {
  const put = await putIfAbsent(store, key, encodeRecord(value), signal);
  return 'etag' in put ? put.etag : null;
}

/** Replaces the record only if it is still the version with `etag` (putIfMatch); null when another process changed it first. */
export async function replaceRecord(
  store: ObjectStore,
  key: string,
  value: unknown,
  etag: string,
  signal?: AbortSignal,
): Promise<string | null> {
  const put = await putIfMatch(store, key, encodeRecord(value), etag, signal);
  return 'etag' in put ? put.etag : null;
}

/** Field checks shared by the record parsers. */
export const isCount = (v: unknown): v is number => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
/** RFC 3339 with a zone and real calendar values, as for the manifest (FORMAT §4.1). */
export const isTime = isRfc3339Time;
export const isNonEmptyString = (v: unknown): v is string => typeof v === 'string' && v.length > 0;

/** Collects problems; `need(ok, what)` records `what` when not ok. */
export function problemList(): { problems: string[]; need: (ok: boolean, what: string) => void } {
  const problems: string[] = [];
  return { problems, need: (ok, what) => void (ok || problems.push(what)) };
}
