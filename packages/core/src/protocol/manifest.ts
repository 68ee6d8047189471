import { StreamConflictError } from '../errors.js';
import { isProcessIdentity, type ProcessIdentity } from '../pipelines/process-identity.js';
import { putIfAbsent, putIfMatch } from '../store/conditional-write.js';
import type { ObjectStore } from '../store/store.js';
import { ENCRYPTION_ALGORITHM, KEY_DERIVATION, type ManifestEncryption } from './encryption.js';
import { isRecord, parseJsonObject } from './json.js';
import { isValidChunkSize, MAX_LEVEL, MIN_LEVEL } from './limits.js';
import { isRfc3339Time } from './rfc3339.js';
import { isStreamId } from './stream-id.js';
import { SENDER_STALE_AFTER_MS } from './stream-status.js';

export const MANIFEST_KEY = 'manifest.json';
export const MANIFEST_FORMAT = 'bucketpipe.manifest';
export const MANIFEST_VERSION = 1;

export type StreamState = 'sending' | 'complete' | 'aborted';

export interface SenderInfo {
  id: string;
  host: string;
  pid: number;
  startedAt: string;
  heartbeatAt: string;
  /** Linux: which process exactly (boot and start time), so that a takeover on the same host can tell it is gone. */
  process?: ProcessIdentity;
}

export interface FinalSummary {
  chunks: number;
  rawBytes: number;
  /** SHA-256 (HMAC-SHA256 when encrypted) over every chunk's raw digest in chunk order, hex (see StreamDigest). */
  digest: string;
}

/** The stream's single mutable object. Its size does not depend on the number of chunks. */
export interface Manifest {
  format: typeof MANIFEST_FORMAT;
  version: typeof MANIFEST_VERSION;
  streamId: string;
  createdAt: string;
  updatedAt: string;
  chunkSize: number;
  codec: 'zstd';
  level: number;
  state: StreamState;
  /** Every chunk with an index below this exists in the store. */
  watermark: number;
  /** Raw and stored bytes of the chunks below the watermark. */
  rawBytes: number;
  storedBytes: number;
  /**
   * The sender's estimate of the stream's raw length (`send --size`, or `zfs send -nP`), for
   * percent and ETA while it is sent; absent when unknown. The stream may end before or after it.
   */
  expectedRawBytes?: number;
  sender: SenderInfo;
  /** Present when the chunks are encrypted (docs/SECURITY.md); absent for a plain stream. */
  encryption?: ManifestEncryption;
  abortReason?: string;
  final?: FinalSummary;
}

export interface VersionedManifest {
  manifest: Manifest;
  etag: string;
}

export async function readManifest(store: ObjectStore): Promise<VersionedManifest | null> {
  const object = await store.get(MANIFEST_KEY);
  if (!object) return null;
  return { manifest: parseManifest(object.body, `${store.description}/${MANIFEST_KEY}`), etag: object.etag };
}

/** Creates the manifest; fails with BP_STREAM_EXISTS when the stream root already holds one. */
export async function createManifest(store: ObjectStore, manifest: Manifest): Promise<string> {
  const put = await putIfAbsent(store, MANIFEST_KEY, encodeManifest(manifest));
  if ('etag' in put) return put.etag;
  const existing = await readManifest(store);
  throw new StreamConflictError('BP_STREAM_EXISTS', describeExisting(store, existing?.manifest), { cause: put.refused });
}

/** Replaces the manifest only if it is still the version we last wrote. */
export async function updateManifest(store: ObjectStore, manifest: Manifest, etag: string): Promise<string> {
  const written = await compareAndSwapManifest(store, manifest, etag);
  if (written !== null) return written;
  throw new StreamConflictError(
    'BP_MANIFEST_RACE',
    `the manifest at ${store.description}/${MANIFEST_KEY} was changed by another process while this sender owned it: stop the other sender, then use a new stream URL`,
  );
}

/**
 * Writes the manifest only if its current version has `etag`; returns the new ETag, or null when
 * another process changed it first (a lost race, which the caller names). A retried write whose
 * first attempt landed finds our exact bytes there (stream id, sender and time make them unique).
 */
export async function compareAndSwapManifest(store: ObjectStore, manifest: Manifest, etag: string): Promise<string | null> {
  const put = await putIfMatch(store, MANIFEST_KEY, encodeManifest(manifest), etag);
  return 'etag' in put ? put.etag : null;
}

function describeExisting(store: ObjectStore, existing: Manifest | undefined): string {
  const where = store.description;
  if (!existing) return `a stream already exists at ${where}: choose a new stream URL or delete the old stream`;
  if (existing.state === 'sending') {
    const ageMs = heartbeatAgeMs(existing, Date.now());
    const sender = `${existing.sender.id} on ${existing.sender.host}, heartbeat ${Math.round(ageMs / 1000)}s ago`;
    if (ageMs < SENDER_STALE_AFTER_MS) {
      return `stream ${where} already has a sender (${sender}): only one sender may write a stream; use a new stream URL`;
    }
    return `stream ${where} already has a sender (${sender}, more than ${SENDER_STALE_AFTER_MS / 1000}s: it looks dead): only one sender may write a stream; to resume the stream, run the same send command again with --takeover`;
  }
  if (existing.state === 'aborted') {
    return `stream ${where} already exists and is aborted (${existing.abortReason ?? 'no reason given'}): to resume it, run the same send command again with --takeover (then restart its receivers); or choose a new stream URL`;
  }
  return `stream ${where} already exists and is ${existing.state}: choose a new stream URL or delete the old stream`;
}

/**
 * The stream's raw length as far as it is known: exact once complete (`final.rawBytes`), else the
 * sender's estimate (`expectedRawBytes`, when above 0), else null.
 */
export function expectedStreamBytes(manifest: Manifest): number | null {
  if (manifest.final) return manifest.final.rawBytes;
  return manifest.expectedRawBytes !== undefined && manifest.expectedRawBytes > 0 ? manifest.expectedRawBytes : null;
}

/** Milliseconds since the sender's last heartbeat by our clock; never negative. */
export function heartbeatAgeMs(manifest: Manifest, now: number): number {
  return Math.max(0, now - Date.parse(manifest.sender.heartbeatAt));
}

export function encodeManifest(manifest: Manifest): Uint8Array {
  return Buffer.from(`${JSON.stringify(manifest, null, 2)}\n`);
}

/** Parses and validates; every problem is a one-line BP_MANIFEST_* error naming `where`. */
export function parseManifest(bytes: Uint8Array, where: string): Manifest {
  const malformed = (what: string) =>
    new StreamConflictError(
      'BP_MANIFEST_MALFORMED',
      `manifest ${where} is malformed (${what}): it was not written by bucketpipe or is damaged`,
    );
  const value = parseJsonObject(bytes, malformed);
  if (value.format !== MANIFEST_FORMAT) throw malformed(`"format" is not "${MANIFEST_FORMAT}"`);
  if (Number.isInteger(value.version) && (value.version as number) > MANIFEST_VERSION) {
    throw new StreamConflictError(
      'BP_MANIFEST_VERSION',
      `manifest ${where} has format version ${value.version}, newer than this bucketpipe understands (${MANIFEST_VERSION}): upgrade bucketpipe`,
    );
  }
  const problems = manifestProblems(value);
  if (problems.length > 0) throw malformed(problems.join('; '));
  return value as unknown as Manifest;
}

const isCount = (v: unknown): v is number => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;

const isEncryption = (v: unknown): boolean =>
  isRecord(v) &&
  v.algorithm === ENCRYPTION_ALGORITHM &&
  v.kdf === KEY_DERIVATION &&
  typeof v.keyCheck === 'string' &&
  /^[0-9a-f]{64}$/.test(v.keyCheck);

function manifestProblems(m: Record<string, unknown>): string[] {
  const problems: string[] = [];
  const need = (ok: boolean, what: string) => {
    if (!ok) problems.push(what);
  };
  need(m.version === MANIFEST_VERSION, `"version" must be ${MANIFEST_VERSION}`);
  need(isStreamId(m.streamId), '"streamId" must be a UUID');
  need(isRfc3339Time(m.createdAt) && isRfc3339Time(m.updatedAt), '"createdAt"/"updatedAt" must be RFC 3339 times with a zone');
  need(isValidChunkSize(m.chunkSize as number), '"chunkSize" must be an integer from 64 KiB to 1 GiB');
  need(m.codec === 'zstd', '"codec" must be "zstd"');
  need(
    Number.isInteger(m.level) && (m.level as number) >= MIN_LEVEL && (m.level as number) <= MAX_LEVEL,
    `"level" must be an integer from ${MIN_LEVEL} to ${MAX_LEVEL}`,
  );
  need(m.state === 'sending' || m.state === 'complete' || m.state === 'aborted', '"state" must be sending, complete or aborted');
  need(isCount(m.watermark), '"watermark" must be a non-negative integer');
  need(isCount(m.rawBytes) && isCount(m.storedBytes), '"rawBytes"/"storedBytes" must be non-negative integers');
  need(m.expectedRawBytes === undefined || isCount(m.expectedRawBytes), '"expectedRawBytes" must be a non-negative integer');
  const sender = m.sender;
  need(
    isRecord(sender) && typeof sender.id === 'string' && typeof sender.host === 'string' && isRfc3339Time(sender.heartbeatAt),
    '"sender" must have id, host and heartbeatAt',
  );
  need(
    !isRecord(sender) || sender.process === undefined || isProcessIdentity(sender.process),
    '"sender.process" must have a bootId and a decimal startTime',
  );
  need(m.abortReason === undefined || typeof m.abortReason === 'string', '"abortReason" must be a string');
  need(
    m.encryption === undefined || isEncryption(m.encryption),
    `"encryption" must have algorithm "${ENCRYPTION_ALGORITHM}", kdf "${KEY_DERIVATION}" and a 64-digit hex keyCheck`,
  );
  need(m.final === undefined || m.state === 'complete', '"final" belongs only to a complete manifest');
  if (m.state === 'complete') {
    const final = m.final;
    const ok =
      isRecord(final) &&
      isCount(final.chunks) &&
      isCount(final.rawBytes) &&
      typeof final.digest === 'string' &&
      /^[0-9a-f]{64}$/.test(final.digest);
    need(ok, 'a complete manifest needs "final" with chunks, rawBytes and digest');
    if (ok && isCount(m.watermark)) need(m.watermark === final.chunks, '"watermark" must equal "final.chunks" when complete');
    if (ok) need(m.rawBytes === final.rawBytes, '"rawBytes" must equal "final.rawBytes" when complete');
    if (ok && isValidChunkSize(m.chunkSize as number)) {
      const size = m.chunkSize as number;
      const { chunks, rawBytes } = final as unknown as FinalSummary;
      const fits = chunks === 0 ? rawBytes === 0 : rawBytes > (chunks - 1) * size && rawBytes <= chunks * size;
      need(fits, '"final.rawBytes" does not fit "final.chunks" chunks of "chunkSize"');
    }
  }
  return problems;
}
