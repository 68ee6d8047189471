import { randomUUID } from 'node:crypto';
import { isPreconditionError } from './s3-errors.js';

/** How a server treats conditional PUTs, learned once per store by trying them on a scratch object. */
export interface ConditionalSupport {
  /** If-None-Match: * on an existing key is refused (create-only holds). */
  createOnly: boolean;
  /**
   * The form of the ETag that If-Match must carry to match, or null when If-Match is not honoured
   * (a wrong ETag is accepted, or the right one is refused in every form). Measured on Ceph radosgw
   * 16: the ETag as returned (quoted) is refused even when it matches; the unquoted one succeeds.
   */
  ifMatchForm: 'quoted' | 'unquoted' | null;
}

/** The raw requests the probe needs; the store implements them on its bucket without key checks. */
export interface ProbeTarget {
  /** Resolves to the ETag; rejects with the SDK's error (a 412 is a refused condition). */
  put(key: string, body: Uint8Array, condition?: { ifNoneMatch?: '*'; ifMatch?: string }): Promise<string>;
  remove(key: string): Promise<void>;
}

/** Scratch objects live here, below the stream root; listings skip it (a '.' segment is the store's own). */
export const PROBE_DIR = '.bucketpipe-probe';

const unquote = (etag: string) => etag.replace(/^W\//, '').replace(/^"(.*)"$/, '$1');
const quote = (etag: string) => `"${unquote(etag)}"`;

export function formatIfMatch(etag: string, form: 'quoted' | 'unquoted'): string {
  return form === 'quoted' ? quote(etag) : unquote(etag);
}

/**
 * Finds out what the server does with conditional PUTs, on an object of its own under `root`
 * (deleted afterwards, also on failure). Errors other than a refused condition propagate: a
 * read-only or wrong credential, a network failure, so that the caller can report or retry them.
 */
export async function probeConditionalSupport(target: ProbeTarget, root: string): Promise<ConditionalSupport> {
  const key = `${root}${PROBE_DIR}/${randomUUID()}`;
  const body = (text: string) => new TextEncoder().encode(`bucketpipe conditional-write probe: ${text}\n`);
  /** The new ETag, or false when the condition was refused (412/409, or the server rejects the header). */
  const attempt = async (text: string, condition: { ifNoneMatch?: '*'; ifMatch?: string }): Promise<string | false> => {
    try {
      return await target.put(key, body(text), condition);
    } catch (error) {
      if (isPreconditionError(error) || isUnsupportedHeader(error)) return false;
      throw error;
    }
  };
  let written = false;
  try {
    // Create-only must let the first write of a key through, and refuse the second.
    const created = await attempt('created by If-None-Match', { ifNoneMatch: '*' });
    let etag = created === false ? await target.put(key, body('created')) : created;
    written = true;
    // A server that ignores If-None-Match overwrites the object here: keep its latest ETag.
    const overwritten = await attempt('overwritten by If-None-Match', { ifNoneMatch: '*' });
    if (overwritten !== false) etag = overwritten;
    const createOnly = created !== false && overwritten === false;
    // A wrong ETag must be refused in both forms, or the server does not look at If-Match at all.
    const bogus = '0123456789abcdef0123456789abcdef';
    const wrongRefused =
      (await attempt('wrong quoted If-Match', { ifMatch: quote(bogus) })) === false &&
      (await attempt('wrong unquoted If-Match', { ifMatch: bogus })) === false;
    let ifMatchForm: ConditionalSupport['ifMatchForm'] = null;
    if (wrongRefused) {
      // The first form that matches wins; the probe stops there (the object changed, its ETag with it).
      for (const form of ['quoted', 'unquoted'] as const) {
        if ((await attempt(`If-Match ${form}`, { ifMatch: formatIfMatch(etag, form) })) !== false) {
          ifMatchForm = form;
          break;
        }
      }
    }
    return { createOnly, ifMatchForm };
  } finally {
    if (written) await target.remove(key).catch(() => {});
  }
}

/** A server that does not implement a conditional header answers 501 NotImplemented. */
function isUnsupportedHeader(error: unknown): boolean {
  const e = error as { name?: unknown; $metadata?: { httpStatusCode?: unknown } } | undefined;
  return e?.$metadata?.httpStatusCode === 501 || e?.name === 'NotImplemented';
}
