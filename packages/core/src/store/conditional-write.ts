import { isPreconditionFailure, type ObjectStore, type StoreError } from './store.js';

/** A conditional write's outcome: written (its ETag), or refused by the condition (the store's error, for a `cause`). */
export type ConditionalPut = { etag: string } | { refused: StoreError };

/**
 * Creates `key` only where there is none; refused when another object is there. A create whose
 * first attempt landed but whose reply was lost (a reset connection, then a retry refused by its
 * own write) finds exactly its bytes there: that is success.
 */
export function putIfAbsent(store: ObjectStore, key: string, body: Uint8Array, signal?: AbortSignal): Promise<ConditionalPut> {
  return conditionalPut(store, key, body, { ifNoneMatch: true, signal });
}

/** Replaces `key` only if its current version has `etag`; refused when another process changed it first. */
export function putIfMatch(store: ObjectStore, key: string, body: Uint8Array, etag: string, signal?: AbortSignal): Promise<ConditionalPut> {
  return conditionalPut(store, key, body, { ifMatch: etag, signal });
}

async function conditionalPut(
  store: ObjectStore,
  key: string,
  body: Uint8Array,
  options: { ifNoneMatch?: true; ifMatch?: string; signal?: AbortSignal },
): Promise<ConditionalPut> {
  try {
    return { etag: (await store.put(key, body, options)).etag };
  } catch (error) {
    if (!isPreconditionFailure(error)) throw error;
    const landed = await ownWriteLanded(store, key, body);
    return landed === undefined ? { refused: error as StoreError } : { etag: landed };
  }
}

/**
 * The ETag of `key` when it holds exactly `body` (our own write, its reply lost); undefined
 * otherwise. A failure to read is thrown, not taken for "another writer": under faults the read
 * itself may be reset, and a false lost race would stop a sender that still owns the object (the
 * caller's retry reads again).
 */
async function ownWriteLanded(store: ObjectStore, key: string, body: Uint8Array): Promise<string | undefined> {
  const current = await store.get(key);
  const same = current && Buffer.from(current.body.buffer, current.body.byteOffset, current.body.byteLength).equals(body);
  return same ? current.etag : undefined;
}
