import { randomUUID } from 'node:crypto';
import type { Stats } from 'node:fs';
import { type FileHandle, link, mkdir, open, readdir, rename, stat, unlink } from 'node:fs/promises';
import { dirname, join, sep } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  assertValidKey,
  type GetOptions,
  type ListedObject,
  type ListOptions,
  type ObjectInfo,
  type ObjectStore,
  type PutOptions,
  type StoredObject,
  StoreError,
} from '@bucketpipe/core';
import { DIRECT_IO_ALIGNMENT, mayBeAligned, openDirect, readAligned, writeAlignedPrefix } from './direct-io.js';
import { isErrno, toStoreError } from './errors.js';

export interface FsStoreOptions {
  /** fsync each object and its directory before a write counts as done (default true). */
  durable?: boolean;
  /** A compare-and-swap lock older than this is taken to belong to a dead process (default 10 s). */
  staleLockMs?: number;
  /**
   * Move the whole blocks of page-aligned buffers with O_DIRECT, around the page cache (default
   * true; off by itself where the file system refuses it).
   */
  directIo?: boolean;
}

const TEMP_PREFIX = '.tmp-';
const LOCK_PREFIX = '.lock-';

/**
 * A directory as an object store. Every write goes to a temporary file that is then renamed (or,
 * for create-only writes, hard-linked) into place, so a reader sees a whole object or none.
 * Compare-and-swap holds between processes through an exclusive lock file around check-and-rename.
 * ETags are derived from inode, size and mtime: every write makes a new inode.
 */
export class FsStore implements ObjectStore {
  readonly root: string;
  readonly description: string;
  #durable: boolean;
  #staleLockMs: number;
  #directIo: boolean;
  #knownDirs = new Set<string>();

  constructor(root: string, options: FsStoreOptions = {}) {
    this.root = root;
    this.description = `file://${root}`;
    this.#durable = options.durable ?? true;
    this.#staleLockMs = options.staleLockMs ?? 10_000;
    this.#directIo = options.directIo ?? true;
  }

  /** Checks that the parent of the stream directory exists, the way a bucket must exist. */
  static async open(root: string, options: FsStoreOptions = {}): Promise<FsStore> {
    const parent = dirname(root);
    let info: Stats;
    try {
      info = await stat(parent);
    } catch (error) {
      if (isErrno(error, 'ENOENT')) {
        throw new StoreError(
          'not-found',
          `directory ${parent} does not exist: create it first (mkdir -p ${parent}) or fix the stream path`,
          { cause: error },
        );
      }
      throw toStoreError(error, 'read', parent);
    }
    if (!info.isDirectory()) throw new StoreError('not-found', `${parent} is not a directory: fix the stream path`);
    try {
      const own = await stat(root);
      if (!own.isDirectory()) throw new StoreError('fatal', `${root} exists and is not a directory: give a directory for the stream`);
    } catch (error) {
      if (!isErrno(error, 'ENOENT')) throw error instanceof StoreError ? error : toStoreError(error, 'read', root);
    }
    return new FsStore(root, options);
  }

  async put(key: string, body: Uint8Array, options: PutOptions = {}): Promise<{ etag: string }> {
    const path = this.#path(key);
    const dir = dirname(path);
    await this.#ensureDir(dir);
    const temp = join(dir, `${TEMP_PREFIX}${randomUUID()}`);
    let placed = false;
    try {
      const etag = await this.#writeTemp(temp, body, key);
      if (options.ifNoneMatch) {
        await this.#linkNew(temp, path, key);
      } else if (options.ifMatch !== undefined) {
        await this.#replaceIfMatch(temp, path, key, options.ifMatch);
      } else {
        await rename(temp, path).catch((error: unknown) => {
          throw toStoreError(error, 'write', path, key);
        });
      }
      placed = !options.ifNoneMatch;
      if (this.#durable) await this.#syncDir(dir);
      return { etag };
    } finally {
      if (!placed) await unlink(temp).catch(() => {});
    }
  }

  async get(key: string, options: GetOptions = {}): Promise<StoredObject | null> {
    const path = this.#path(key);
    let handle: Awaited<ReturnType<typeof open>>;
    try {
      handle = await open(path, 'r');
    } catch (error) {
      if (isErrno(error, 'ENOENT', 'ENOTDIR')) return null; // ENOTDIR: a shorter key is an object, so this one is absent
      throw toStoreError(error, 'read', path, key);
    }
    try {
      const info = await handle.stat();
      if (!info.isFile()) return null; // a directory holding longer keys, not an object (as head() says)
      const start = Math.min(options.range?.start ?? 0, info.size);
      const end = Math.min(options.range?.end ?? info.size, info.size);
      const length = Math.max(0, end - start);
      // The caller's buffer, or one of its own (not Node's shared pool), so that it can be handed to a worker.
      const into = options.into !== undefined && options.into.length >= length ? options.into : undefined;
      const body = into ? into.subarray(0, length) : new Uint8Array(Buffer.allocUnsafeSlow(length).buffer, 0, length);
      let read = 0;
      // Only into the caller's buffer: a pool's reused buffer may be aligned, one allocated here never is.
      if (into && this.#directIo && start % DIRECT_IO_ALIGNMENT === 0 && mayBeAligned(body)) {
        const direct = await this.#openDirect(path, 'read');
        if (direct) {
          try {
            read = await readAligned(direct, into, start, length);
          } finally {
            await direct.close();
          }
        }
      }
      while (read < length) {
        const { bytesRead } = await handle.read(body, read, length - read, start + read);
        if (bytesRead === 0) break;
        read += bytesRead;
      }
      return { body: read === length ? body : body.subarray(0, read), etag: etagOf(info) };
    } catch (error) {
      throw toStoreError(error, 'read', path, key);
    } finally {
      await handle.close();
    }
  }

  async head(key: string): Promise<ObjectInfo | null> {
    const path = this.#path(key);
    try {
      const info = await stat(path);
      return info.isFile() ? { size: info.size, etag: etagOf(info) } : null;
    } catch (error) {
      if (isErrno(error, 'ENOENT', 'ENOTDIR')) return null;
      throw toStoreError(error, 'read', path, key);
    }
  }

  async *list(prefix: string, options: ListOptions = {}): AsyncIterable<ListedObject> {
    // Walk from the deepest directory the prefix names in full; filter the rest by string prefix.
    const cut = prefix.lastIndexOf('/');
    const baseKey = cut === -1 ? '' : prefix.slice(0, cut);
    if (baseKey !== '') assertValidKey(baseKey);
    const keys: ListedObject[] = [];
    await this.#collect(baseKey === '' ? this.root : this.#path(baseKey), baseKey, prefix, options.startAfter, keys);
    keys.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
    yield* keys;
  }

  async delete(keys: readonly string[]): Promise<void> {
    for (const key of keys) {
      const path = this.#path(key);
      await unlink(path).catch((error: unknown) => {
        if (!isErrno(error, 'ENOENT')) throw toStoreError(error, 'delete', path, key);
      });
    }
  }

  async close(): Promise<void> {}

  #path(key: string): string {
    assertValidKey(key);
    return join(this.root, ...key.split('/'));
  }

  async #collect(dir: string, dirKey: string, prefix: string, startAfter: string | undefined, into: ListedObject[]): Promise<void> {
    let entries: import('node:fs').Dirent[];
    try {
      entries = await readdir(dir, { withFileTypes: true });
    } catch (error) {
      if (isErrno(error, 'ENOENT', 'ENOTDIR')) return;
      throw toStoreError(error, 'list', dir);
    }
    for (const entry of entries) {
      if (entry.name.startsWith('.')) continue;
      const key = dirKey === '' ? entry.name : `${dirKey}/${entry.name}`;
      if (entry.isDirectory()) {
        // Every key below `key/` sorts before `startAfter` unless `startAfter` itself lies below it.
        const skipped = startAfter !== undefined && `${key}/` < startAfter && !startAfter.startsWith(`${key}/`);
        if (!skipped && (key.startsWith(prefix) || prefix.startsWith(`${key}/`))) {
          await this.#collect(join(dir, entry.name), key, prefix, startAfter, into);
        }
      } else if (entry.isFile() && key.startsWith(prefix) && (startAfter === undefined || key > startAfter)) {
        const info = await stat(join(dir, entry.name)).catch(() => undefined);
        if (info) into.push({ key, size: info.size });
      }
    }
  }

  async #ensureDir(dir: string): Promise<void> {
    if (this.#knownDirs.has(dir)) return;
    try {
      if (dir !== this.root) await this.#ensureDir(dirname(dir));
      await mkdir(dir);
    } catch (error) {
      if (!isErrno(error, 'EEXIST')) {
        if (isErrno(error, 'ENOENT') && dir === this.root) {
          throw new StoreError('not-found', `directory ${dirname(dir)} does not exist: create it first (mkdir -p ${dirname(dir)})`, {
            cause: error,
          });
        }
        throw toStoreError(error, 'create directory', dir);
      }
    }
    this.#knownDirs.add(dir);
  }

  async #writeTemp(temp: string, body: Uint8Array, key: string): Promise<string> {
    let handle: FileHandle | undefined;
    try {
      let written = 0;
      let flags = 'wx';
      if (this.#directIo && mayBeAligned(body)) {
        const direct = await this.#openDirect(temp, 'write');
        if (direct) {
          flags = 'r+';
          try {
            written = await writeAlignedPrefix(direct, body);
          } finally {
            await direct.close();
          }
        } else flags = 'w'; // a refused O_DIRECT open may or may not have created the file (its name is ours alone)
      }
      // The tail that is not a whole block (or everything, when O_DIRECT was refused) goes through the page cache.
      handle = await open(temp, flags);
      while (written < body.length) {
        const { bytesWritten } = await handle.write(body, written, body.length - written, written);
        written += bytesWritten;
      }
      if (this.#durable) await handle.sync();
      return etagOf(await handle.stat());
    } catch (error) {
      throw toStoreError(error, 'write', temp, key);
    } finally {
      await handle?.close();
    }
  }

  /** An O_DIRECT handle, or undefined once the file system has refused one (then never tried again). */
  async #openDirect(path: string, purpose: 'read' | 'write'): Promise<FileHandle | undefined> {
    const handle = await openDirect(path, purpose);
    if (!handle) this.#directIo = false;
    return handle;
  }

  async #linkNew(temp: string, path: string, key: string): Promise<void> {
    try {
      await link(temp, path);
    } catch (error) {
      if (isErrno(error, 'EEXIST')) throw new StoreError('precondition', `${path} already exists`, { key, cause: error });
      throw toStoreError(error, 'create', path, key);
    }
  }

  async #replaceIfMatch(temp: string, path: string, key: string, etag: string): Promise<void> {
    const lock = join(dirname(path), `${LOCK_PREFIX}${path.slice(path.lastIndexOf(sep) + 1)}`);
    await this.#lock(lock, key);
    try {
      const current = await stat(path).catch((error: unknown) => {
        if (isErrno(error, 'ENOENT')) return undefined;
        throw toStoreError(error, 'read', path, key);
      });
      if (!current || etagOf(current) !== etag) {
        throw new StoreError('precondition', `${path} is not at version ${etag}`, { key });
      }
      await rename(temp, path).catch((error: unknown) => {
        throw toStoreError(error, 'write', path, key);
      });
    } finally {
      await unlink(lock).catch(() => {});
    }
  }

  /** Takes an exclusive lock file; breaks it when it is older than the stale limit (its holder died). */
  async #lock(lock: string, key: string): Promise<void> {
    const deadline = Date.now() + 2 * this.#staleLockMs;
    for (let delayMs = 1; ; delayMs = Math.min(delayMs * 2, 50)) {
      try {
        const handle = await open(lock, 'wx');
        await handle.close();
        return;
      } catch (error) {
        if (!isErrno(error, 'EEXIST')) throw toStoreError(error, 'lock', lock, key);
      }
      const info = await stat(lock).catch(() => undefined);
      if (info && Date.now() - info.mtimeMs > this.#staleLockMs) {
        await this.#breakStaleLock(lock, info.ino);
        continue;
      }
      if (Date.now() > deadline) throw new StoreError('transient', `timed out waiting for lock ${lock}`, { key });
      await sleep(delayMs);
    }
  }

  /**
   * Removes a lock whose holder is presumed dead. Only one process wins the rename; if the file it
   * moved is not the stale one it looked at (another breaker already replaced it with a fresh lock),
   * it puts that lock back instead of deleting it.
   */
  async #breakStaleLock(lock: string, staleIno: number): Promise<void> {
    const grave = `${lock}.stale-${randomUUID()}`;
    if (
      !(await rename(lock, grave).then(
        () => true,
        () => false,
      ))
    )
      return;
    const moved = await stat(grave).catch(() => undefined);
    if (moved && moved.ino !== staleIno) await link(grave, lock).catch(() => {});
    await unlink(grave).catch(() => {});
  }

  async #syncDir(dir: string): Promise<void> {
    const handle = await open(dir, 'r');
    try {
      await handle.sync();
    } finally {
      await handle.close();
    }
  }
}

function etagOf(info: Stats): string {
  return `${info.ino.toString(16)}-${info.size.toString(16)}-${Math.round(info.mtimeMs * 1000).toString(16)}`;
}
