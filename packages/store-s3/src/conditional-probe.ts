import { randomUUID } from 'node:crypto';
import { type RetryPolicy, StoreError, withRetry } from '@bucketpipe/core';
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

export interface ProbeOptions {
  /**
   * Whether a failed request may be repeated (a reset connection, a 5xx, a throttle). The probe
   * repeats those with core's backoff, like any request, so that one fault does not fail the write
   * it is probing for; by default nothing is repeated.
   */
  isRetryable?: (error: unknown) => boolean;
  retry?: RetryPolicy;
}

/** Carries a repeatable failure through withRetry; unwrapped to the request's own error if it gives up. */
class RepeatableProbeFailure extends StoreError {}

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
 * read-only or wrong credential, a network failure, so that the caller can report or retry them;
 * those `options.isRetryable` accepts are repeated first. A step whose reply was lost may have been
 * applied: a create refused after such a loss is our own create, and a matching If-Match whose
 * outcome is unknown is tried again on a fresh version of the object, so a lost reply never makes
 * the probe conclude that a condition is not honoured.
 */
export async function probeConditionalSupport(target: ProbeTarget, root: string, options: ProbeOptions = {}): Promise<ConditionalSupport> {
  const key = `${root}${PROBE_DIR}/${randomUUID()}`;
  const body = (text: string) => new TextEncoder().encode(`bucketpipe conditional-write probe: ${text}\n`);
  const repeated = <T>(request: () => Promise<T>, onRetry?: () => void): Promise<T> => repeat(request, options, onRetry);
  /** The new ETag, or false when the condition was refused (412/409, or the server rejects the header); `uncertain` when a failed try may have been applied. */
  const attempt = async (text: string, condition: { ifNoneMatch?: '*'; ifMatch?: string }) => {
    let uncertain = false;
    const etag = await repeated(
      async (): Promise<string | false> => {
        try {
          return await target.put(key, body(text), condition);
        } catch (error) {
          if (isPreconditionError(error) || isUnsupportedHeader(error)) return false;
          throw error;
        }
      },
      () => {
        uncertain = true;
      },
    );
    return { etag, uncertain };
  };
  /** A plain PUT: the object at a version whose ETag we know. */
  const reset = (text: string) => repeated(() => target.put(key, body(text)));
  let written = false;
  try {
    // Create-only must let the first write of a key through, and refuse the second.
    written = true; // from the first try on: a create whose reply is lost may have landed
    const create = await attempt('created by If-None-Match', { ifNoneMatch: '*' });
    // Refused after a lost reply: the key is ours (a fresh UUID), so that was our own create landing.
    const created = create.etag !== false || create.uncertain;
    let etag = create.etag === false ? await reset('created') : create.etag;
    // A server that ignores If-None-Match overwrites the object here: keep its latest ETag.
    const overwritten = (await attempt('overwritten by If-None-Match', { ifNoneMatch: '*' })).etag;
    if (overwritten !== false) etag = overwritten;
    const createOnly = created && overwritten === false;
    // A wrong ETag must be refused in both forms, or the server does not look at If-Match at all.
    const bogus = '0123456789abcdef0123456789abcdef';
    const wrongRefused =
      (await attempt('wrong quoted If-Match', { ifMatch: quote(bogus) })).etag === false &&
      (await attempt('wrong unquoted If-Match', { ifMatch: bogus })).etag === false;
    let ifMatchForm: ConditionalSupport['ifMatchForm'] = null;
    if (wrongRefused) {
      // The first form that matches wins; the probe stops there (the object changed, its ETag with it).
      forms: for (const form of ['quoted', 'unquoted'] as const) {
        for (let tries = 0; tries < 4; tries++) {
          const matched = await attempt(`If-Match ${form}`, { ifMatch: formatIfMatch(etag, form) });
          if (matched.etag !== false) {
            ifMatchForm = form;
            break forms;
          }
          if (!matched.uncertain) break;
          // A try whose reply was lost may have changed the object: ask again on a version we know.
          etag = await reset(`reset after a lost reply to If-Match ${form}`);
        }
      }
    }
    return { createOnly, ifMatchForm };
  } finally {
    if (written) await repeated(() => target.remove(key)).catch(() => {});
  }
}

async function repeat<T>(request: () => Promise<T>, options: ProbeOptions, onRetry?: () => void): Promise<T> {
  const isRetryable = options.isRetryable ?? (() => false);
  try {
    return await withRetry(
      async () => {
        try {
          return await request();
        } catch (error) {
          throw isRetryable(error) ? new RepeatableProbeFailure('transient', 'a probe request failed', { cause: error }) : error;
        }
      },
      { policy: options.retry, onRetry },
    );
  } catch (error) {
    throw error instanceof RepeatableProbeFailure ? error.cause : error;
  }
}

/** A server that does not implement a conditional header answers 501 NotImplemented. */
function isUnsupportedHeader(error: unknown): boolean {
  const e = error as { name?: unknown; $metadata?: { httpStatusCode?: unknown } } | undefined;
  return e?.$metadata?.httpStatusCode === 501 || e?.name === 'NotImplemented';
}
