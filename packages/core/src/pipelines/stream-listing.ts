import { StreamConflictError } from '../errors.js';
import { isRecord } from '../protocol/json.js';
import { MANIFEST_KEY, type Manifest, parseManifest } from '../protocol/manifest.js';
import type { ReceiverCursor } from '../protocol/receiver-cursor.js';
import type { ObjectStore } from '../store/store.js';

/** A stream found under a listed location. */
export interface ListedStream {
  /** The stream root relative to the listed location: '' for the location itself, else e.g. 'db/pgdata'. */
  path: string;
  /** null when the manifest cannot be read (see `problem`). */
  manifest: Manifest | null;
  /** Why the manifest cannot be read: malformed, or written by a newer version. */
  problem?: { code: string; message: string };
  /** Every readable cursor under the stream's receivers/, including stale ones of an earlier stream. */
  receivers: ReceiverCursor[];
}

export interface ListStreamsOptions {
  /** Manifests and cursors read in parallel (default 8). */
  concurrency?: number;
  /**
   * A prefix holding `marker` (e.g. a replication series' series.json) is listed as one group: the
   * streams under its `members` prefix (e.g. 'streams/') are skipped, not listed one by one.
   */
  groups?: { marker: string; members: string };
  signal?: AbortSignal;
}

/** What a listing found at and below a location. */
export interface ListedLocation {
  streams: ListedStream[];
  /** Roots ('' or e.g. 'db/series', no trailing slash) that hold the groups' marker, in key order. */
  groups: string[];
}

/** Greater than every chunk key (exactly 12 digits, FORMAT.md §1) and less than anything else after them. */
const LAST_CHUNK_KEY = 'chunks/999999999999';
const chunkKey = /^(.*\/)?chunks\/\d{12}$/;
const cursorKey = /^(.*\/)?receivers\/[^/]+\.json$/;

/**
 * Every stream at or below the store's root (a key prefix holding a manifest.json), ordered by path.
 * Costs about one listing request per stream however many chunks it has: on reaching a stream's
 * first chunk key the listing restarts after its last possible one (`startAfter`), instead of
 * paging through up to a million chunk keys. Cursor keys come from the same walk (a stream's
 * receivers/ sorts after its manifest.json), so each stream then costs one GET per object read.
 */
export async function listStreams(store: ObjectStore, options: ListStreamsOptions = {}): Promise<ListedStream[]> {
  return (await listLocation(store, options)).streams;
}

/** listStreams, and the groups (see ListStreamsOptions.groups) found on the way, each costing one restart of the listing. */
export async function listLocation(store: ObjectStore, options: ListStreamsOptions = {}): Promise<ListedLocation> {
  const { roots, groups } = await findStreamRoots(store, options.groups, options.signal);
  const entries = [...roots.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  const listed = await mapLimit(entries, options.concurrency ?? 8, ([root, cursorKeys]) => readStream(store, root, cursorKeys));
  return {
    streams: listed.filter((stream): stream is ListedStream => stream !== null),
    groups: groups.map((root) => root.replace(/\/$/, '')),
  };
}

/** Stream roots ('' or 'a/b/', with the slash) mapped to their cursor keys, and group roots. */
async function findStreamRoots(
  store: ObjectStore,
  grouping: ListStreamsOptions['groups'],
  signal: AbortSignal | undefined,
): Promise<{ roots: Map<string, string[]>; groups: string[] }> {
  const roots = new Map<string, string[]>();
  const groups: string[] = [];
  let startAfter: string | undefined;
  let restart = true;
  while (restart) {
    restart = false;
    for await (const { key } of store.list('', { startAfter, signal })) {
      if (startAfter !== undefined && key <= startAfter) continue; // a store that ignored startAfter: slow, still right
      if (grouping) {
        if (key === grouping.marker || key.endsWith(`/${grouping.marker}`)) {
          groups.push(key.slice(0, -grouping.marker.length));
          continue;
        }
        const group = groups.findLast((root) => key.startsWith(root + grouping.members));
        if (group !== undefined) {
          // Past every key under <group>/<members>: the members' last character '/' becomes '0', the next one up.
          const skipTo = `${group}${grouping.members.slice(0, -1)}0`;
          if (key < skipTo) {
            startAfter = skipTo;
            restart = true;
            break;
          }
        }
      }
      const chunk = chunkKey.exec(key);
      if (chunk) {
        const skipTo = `${chunk[1] ?? ''}${LAST_CHUNK_KEY}`;
        // startAfter only grows (every key seen is above it), so this ends.
        if (key < skipTo) {
          startAfter = skipTo;
          restart = true;
          break;
        }
      } else if (key === MANIFEST_KEY || key.endsWith(`/${MANIFEST_KEY}`)) {
        roots.set(key.slice(0, -MANIFEST_KEY.length), []);
      } else {
        const cursor = cursorKey.exec(key);
        if (cursor) roots.get(cursor[1] ?? '')?.push(key);
      }
    }
  }
  return { roots, groups };
}

async function readStream(store: ObjectStore, root: string, cursorKeys: string[]): Promise<ListedStream | null> {
  const object = await store.get(`${root}${MANIFEST_KEY}`);
  if (!object) return null; // deleted since it was listed
  const path = root.replace(/\/$/, '');
  const receivers: ReceiverCursor[] = [];
  for (const key of cursorKeys) {
    const cursor = await readCursor(store, key);
    if (cursor) receivers.push(cursor);
  }
  try {
    return { path, manifest: parseManifest(object.body, `${store.description}/${root}${MANIFEST_KEY}`), receivers };
  } catch (error) {
    if (!(error instanceof StreamConflictError)) throw error;
    return { path, manifest: null, problem: { code: error.code, message: error.message }, receivers };
  }
}

/** Skips what FORMAT.md §7 says readers skip: absent, not JSON, not a bucketpipe cursor. */
async function readCursor(store: ObjectStore, key: string): Promise<ReceiverCursor | null> {
  const object = await store.get(key);
  if (!object) return null;
  try {
    const value: unknown = JSON.parse(Buffer.from(object.body).toString('utf8'));
    return isRecord(value) && value.format === 'bucketpipe.receiver' ? (value as unknown as ReceiverCursor) : null;
  } catch {
    return null;
  }
}

/** `task` over `items` with at most `limit` running at once; results in the items' order. */
export async function mapLimit<T, R>(items: readonly T[], limit: number, task: (item: T) => Promise<R>): Promise<R[]> {
  const results: R[] = new Array<R>(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const index = next++;
      results[index] = await task(items[index] as T);
    }
  };
  await Promise.all(Array.from({ length: Math.min(Math.max(1, limit), items.length) }, worker));
  return results;
}
