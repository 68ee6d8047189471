import { badRequest, GcsHttpError } from './errors.js';
import { parseGoogHash } from './hashes.js';
import { type GcsState, newUploadId, type Preconditions, type StoredObject } from './state.js';

/** One resumable upload session: bytes persisted so far, and how it ended. */
interface Session {
  id: string;
  bucket: string;
  name: string;
  contentType: string;
  conditions: Preconditions;
  expected: { md5?: string; crc32c?: string };
  parts: Buffer[];
  received: number;
  total: number | undefined;
  outcome: { object: StoredObject; verified: string[] } | { error: GcsHttpError } | { cancelled: true } | undefined;
}

export type ChunkResult = { status: 308; received: number } | { status: 200; object: StoredObject; verified: string[] };

/**
 * Resumable uploads as the JSON API does them: a POST opens a session, PUTs send ranges
 * (`Content-Range: bytes first-last/total`, `bytes first-*\/total` for "the rest", `bytes *\/total`
 * to ask where the upload stands), 308 with `Range: bytes=0-N` until the last byte arrived.
 */
export class ResumableUploads {
  readonly #state: GcsState;
  readonly #sessions = new Map<string, Session>();

  constructor(state: GcsState) {
    this.#state = state;
  }

  open(options: {
    bucket: string;
    name: string;
    contentType: string;
    conditions: Preconditions;
    expected: { md5?: string; crc32c?: string };
    total: number | undefined;
  }): string {
    this.#state.bucket(options.bucket);
    // GCS checks preconditions when the session opens, and again when the object is written.
    checkNow(this.#state, options.bucket, options.name, options.conditions);
    const id = newUploadId();
    this.#sessions.set(id, { ...options, id, parts: [], received: 0, outcome: undefined });
    return id;
  }

  cancel(id: string): void {
    const session = this.#session(id);
    session.outcome = { cancelled: true };
    session.parts = [];
  }

  /** Handles one PUT to the session URI. */
  put(id: string, contentRange: string | undefined, googHash: string | undefined, body: Buffer): ChunkResult {
    const session = this.#session(id);
    if (session.outcome) return this.#ended(session);
    const range = parseContentRange(contentRange, body.length, session.received);
    if (range.total !== undefined) {
      if (session.total !== undefined && session.total !== range.total) {
        throw badRequest(`Upload total changed from ${session.total} to ${range.total}`);
      }
      session.total = range.total;
    }
    if (range.first !== undefined) {
      if (range.first > session.received) {
        throw badRequest(`Invalid request: the chunk starts at byte ${range.first}, but only ${session.received} bytes were persisted`);
      }
      const fresh = body.subarray(session.received - range.first);
      if (session.total !== undefined && session.received + fresh.length > session.total) {
        throw badRequest(`Invalid request: more than the declared ${session.total} bytes`);
      }
      if (fresh.length > 0) session.parts.push(Buffer.from(fresh));
      session.received += fresh.length;
      if (range.last === '*' && session.total === undefined) session.total = session.received;
    }
    if (session.total === undefined || session.received < session.total) return { status: 308, received: session.received };
    return this.#finish(session, parseGoogHash(googHash));
  }

  #finish(session: Session, headerHashes: { md5?: string; crc32c?: string }): ChunkResult {
    const expected = { ...session.expected, ...headerHashes };
    try {
      const object = this.#state.putObject(session.bucket, session.name, Buffer.concat(session.parts, session.received), {
        contentType: session.contentType,
        conditions: session.conditions,
        expected,
      });
      session.outcome = { object, verified: Object.keys(expected) };
    } catch (error) {
      if (!(error instanceof GcsHttpError)) throw error;
      session.outcome = { error };
    }
    session.parts = [];
    return this.#ended(session);
  }

  #ended(session: Session): ChunkResult {
    const outcome = session.outcome;
    if (outcome && 'object' in outcome) return { status: 200, object: outcome.object, verified: outcome.verified };
    if (outcome && 'error' in outcome) throw outcome.error;
    throw new GcsHttpError(499, 'clientClosedRequest', 'The upload session was cancelled.');
  }

  #session(id: string): Session {
    const session = this.#sessions.get(id);
    if (!session) throw new GcsHttpError(404, 'notFound', `No such upload session: ${id}`);
    return session;
  }
}

function checkNow(state: GcsState, bucket: string, name: string, conditions: Preconditions): void {
  try {
    state.getObject(bucket, name, conditions);
  } catch (error) {
    // Absent is fine here unless a condition says otherwise (getObject checks conditions first).
    if (!(error instanceof GcsHttpError) || error.status !== 404) throw error;
  }
}

function parseContentRange(
  header: string | undefined,
  bodyLength: number,
  received: number,
): { first?: number; last?: number | '*'; total?: number } {
  // Without Content-Range the body is the whole object.
  if (header === undefined) return { first: received, last: received + bodyLength - 1, total: received + bodyLength };
  const status = /^bytes \*\/(\*|\d+)$/.exec(header.trim());
  if (status) {
    if (bodyLength > 0) throw badRequest('A status query (Content-Range: bytes */…) must have an empty body');
    return status[1] === '*' ? {} : { total: Number(status[1]) };
  }
  const match = /^bytes (\d+)-(\d+|\*)\/(\*|\d+)$/.exec(header.trim());
  if (!match) throw badRequest(`Invalid Content-Range header: ${header}`);
  const first = Number(match[1]);
  const last = match[2] === '*' ? '*' : Number(match[2]);
  const total = match[3] === '*' ? undefined : Number(match[3]);
  if (last !== '*' && last - first + 1 !== bodyLength) {
    throw badRequest(`Content-Range ${header} declares ${last - first + 1} bytes but the body has ${bodyLength}`);
  }
  return total === undefined ? { first, last } : { first, last, total };
}
