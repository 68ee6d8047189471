import { BucketpipeError, ExitCode } from '../errors.js';

/**
 * The only thing bucketpipe needs from storage. Keys are relative, '/'-separated paths under the
 * stream root the store was opened on. Implementations: store-fs, store-s3, store-gcs, and the
 * memory store in store-testkit; every one must pass the conformance suite in store-testkit.
 */
export interface ObjectStore {
  /** Human-readable location of the store root, for messages (never contains credentials). */
  readonly description: string;
  /**
   * Writes the whole object atomically: readers see the old object or the new one, never a part.
   * `ifNoneMatch: true` creates only when the key is absent; `ifMatch` replaces only the version
   * with that ETag. A failed condition throws StoreError with kind 'precondition'.
   */
  put(key: string, body: Uint8Array, options?: PutOptions): Promise<{ etag: string }>;
  /** Reads an object, or the byte range [start, end) of it; null when absent. */
  get(key: string, options?: GetOptions): Promise<StoredObject | null>;
  head(key: string): Promise<ObjectInfo | null>;
  /**
   * Every key starting with `prefix`, in ascending byte order of the key; with `startAfter`, only
   * the keys after it (it need not exist), so that a caller can skip a range without paging through it.
   */
  list(prefix: string, options?: ListOptions): AsyncIterable<ListedObject>;
  /** Deletes the keys; absent keys are not an error. */
  delete(keys: readonly string[]): Promise<void>;
  /** Releases sockets, handles, timers. */
  close(): Promise<void>;
}

export interface PutOptions {
  ifNoneMatch?: true;
  ifMatch?: string;
  signal?: AbortSignal;
}

export interface ListOptions {
  /** Lists only keys greater (in byte order) than this one. */
  startAfter?: string;
  signal?: AbortSignal;
}

export interface GetOptions {
  /** Half-open byte range [start, end). */
  range?: { start: number; end: number };
  /**
   * A buffer the body may be read into when it fits: the body is then a view of it from offset 0.
   * A reader that reads many objects of a known bound (the receiver's chunks) reuses its memory
   * instead of having fresh pages faulted in for every object. Stores may ignore it.
   */
  into?: Uint8Array;
  signal?: AbortSignal;
}

export interface StoredObject {
  body: Uint8Array;
  etag: string;
}

export interface ObjectInfo {
  size: number;
  etag: string;
}

export interface ListedObject {
  key: string;
  size: number;
}

/** What the retry policy keys off. */
export type StoreErrorKind =
  | 'precondition' // create-only or compare-and-swap condition failed: never retried
  | 'auth' // credentials missing, wrong or not allowed: never retried
  | 'not-found' // the bucket or directory itself does not exist: never retried
  | 'throttled' // the store asked us to slow down: retried with backoff
  | 'transient' // network or 5xx: retried with backoff
  | 'fatal'; // anything else: not retried

export class StoreError extends BucketpipeError {
  readonly kind: StoreErrorKind;
  readonly key: string | undefined;

  constructor(kind: StoreErrorKind, message: string, options?: { key?: string; cause?: unknown }) {
    super(`BP_STORE_${kind.toUpperCase().replace('-', '_')}`, message, ExitCode.store, options);
    this.kind = kind;
    this.key = options?.key;
  }

  get retryable(): boolean {
    return this.kind === 'throttled' || this.kind === 'transient';
  }
}

export function isPreconditionFailure(error: unknown): boolean {
  return error instanceof StoreError && error.kind === 'precondition';
}

// Segments may not start with '.': stores keep their own temporary and lock files as dotfiles.
const keySegment = /^[A-Za-z0-9_-][A-Za-z0-9._-]*$/;

/** Rejects keys that could escape the stream root or mean different things to different stores. */
export function assertValidKey(key: string): void {
  const segments = key.split('/');
  const bad = key.length === 0 || key.length > 1024 || segments.some((s) => !keySegment.test(s));
  if (bad) {
    throw new StoreError(
      'fatal',
      `invalid object key ${JSON.stringify(key)}: keys are relative paths of [A-Za-z0-9._-] segments not starting with '.'`,
      { key },
    );
  }
}
