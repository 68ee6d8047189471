import { type ChildProcess, spawn } from 'node:child_process';
import { chmod, mkdir, mkdtemp, readdir, readFile, rm, stat, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describeStoreConformance, expectStoreError, reachableByOthers } from '@bucketpipe/store-testkit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FsStore } from './fs-store.js';

let base: string;
let serial = 0;
/** A fresh, not yet existing stream directory inside the test's temporary directory. */
const freshRoot = () => join(base, `stream-${++serial}`);

beforeAll(async () => {
  base = await mkdtemp(join(tmpdir(), 'bucketpipe-fs-store-'));
});
afterAll(async () => {
  await rm(base, { recursive: true, force: true });
});

describeStoreConformance('FsStore', () => FsStore.open(freshRoot()));

const bytes = (s: string) => new TextEncoder().encode(s);
const text = (b: Uint8Array | undefined) => (b ? Buffer.from(b).toString('utf8') : undefined);

// ---------------------------------------------------------------------------------------------
// Child processes that use the *built* store (dist), so that the races below are between
// processes, not between promises of one event loop.

const storeFsUrl = new URL('../dist/index.js', import.meta.url).href;

/** Body of a child: waits for "go" on stdin, runs one task, prints one JSON line. */
const childScript = `
const { FsStore } = await import(process.env.BP_STORE_FS);
const task = JSON.parse(process.env.BP_TASK);
const store = new FsStore(task.root, { durable: false, staleLockMs: task.staleLockMs ?? 10000 });
const outcome = (error) => ({ ok: false, kind: error?.kind ?? null, code: error?.code ?? null, message: String(error?.message ?? error) });
process.stdout.write('ready\\n');
// "go <time>": every process starts at the same wall-clock time.
const go = String(await new Promise((resolve) => process.stdin.once('data', resolve)));
const startAt = Number(go.split(' ')[1]);
const until = (at) => new Promise((resolve) => setTimeout(resolve, Math.max(0, at - Date.now())));
await until(startAt);
let result;
try {
  if (task.kind === 'create' || task.kind === 'cas') {
    // One attempt per key, every process at the same moment (a step apart per key), so that they collide.
    result = { ok: true, attempts: [] };
    for (const [i, key] of task.keys.entries()) {
      await until(startAt + i * task.stepMs);
      const options = task.kind === 'create' ? { ifNoneMatch: true } : { ifMatch: task.etags[i] };
      try {
        const { etag } = await store.put(key, Buffer.from(task.body), options);
        result.attempts.push({ ok: true, etag });
      } catch (error) {
        result.attempts.push(outcome(error));
      }
    }
  } else if (task.kind === 'increment') {
    let conflicts = 0;
    for (let i = 0; i < task.times; i++) {
      for (;;) {
        const current = await store.get(task.key);
        const next = JSON.stringify({ n: JSON.parse(Buffer.from(current.body).toString()).n + 1, by: task.body });
        try {
          await store.put(task.key, Buffer.from(next), { ifMatch: current.etag });
          break;
        } catch (error) {
          if (error.kind !== 'precondition') throw error;
          conflicts++;
        }
      }
    }
    result = { ok: true, conflicts };
  } else if (task.kind === 'calls') {
    result = { ok: true, calls: [] };
    for (const call of task.calls) {
      try {
        if (call.op === 'put') await store.put(call.key, Buffer.from('x'));
        else if (call.op === 'list') { for await (const _ of store.list(call.key)) {} }
        else await store[call.op](call.op === 'delete' ? [call.key] : call.key);
        result.calls.push({ ok: true });
      } catch (error) {
        result.calls.push(outcome(error));
      }
    }
  }
} catch (error) {
  result = outcome(error);
}
process.stdout.write(JSON.stringify(result) + '\\n');
`;

interface Attempt {
  ok: boolean;
  etag?: string;
  kind?: string | null;
}

interface ChildResult {
  ok: boolean;
  attempts?: Attempt[];
  kind?: string | null;
  code?: string | null;
  message?: string;
  conflicts?: number;
  calls?: Array<{ ok: boolean; kind?: string | null; message?: string }>;
}

interface Child {
  process: ChildProcess;
  ready: Promise<void>;
  result: Promise<ChildResult>;
}

function startChild(task: Record<string, unknown>, identity: { uid?: number; gid?: number } = {}): Child {
  const child = spawn(process.execPath, ['--input-type=module', '-e', childScript], {
    env: { ...process.env, BP_STORE_FS: storeFsUrl, BP_TASK: JSON.stringify(task) },
    stdio: ['pipe', 'pipe', 'pipe'],
    ...identity,
  });
  let stdout = '';
  let stderr = '';
  child.stderr?.on('data', (data: Buffer) => {
    stderr += data.toString();
  });
  let onReady: () => void = () => {};
  const ready = new Promise<void>((resolve) => {
    onReady = resolve;
  });
  child.stdout?.on('data', (data: Buffer) => {
    stdout += data.toString();
    if (stdout.startsWith('ready\n')) onReady();
  });
  const result = new Promise<ChildResult>((resolve, reject) => {
    child.once('error', reject);
    child.once('exit', (code) => {
      const line = stdout.split('\n')[1];
      if (code !== 0 || !line) reject(new Error(`child exited ${code}: ${stderr.trim() || stdout.trim()}`));
      else resolve(JSON.parse(line) as ChildResult);
    });
  });
  // A child that dies before "ready" must not leave the test waiting for it.
  void result.catch(() => onReady());
  return { process: child, ready, result };
}

/** Starts the children, waits until every one is ready, then releases them at once. */
async function race(tasks: Array<Record<string, unknown>>, identity?: { uid?: number; gid?: number }): Promise<ChildResult[]> {
  const children = tasks.map((task) => startChild(task, identity));
  await Promise.all(children.map((c) => c.ready));
  const startAt = Date.now() + 50;
  for (const c of children) c.process.stdin?.end(`go ${startAt}\n`);
  return Promise.all(children.map((c) => c.result));
}

describe('FsStore between processes', () => {
  const processes = 6;

  const keys = Array.from({ length: 20 }, (_, i) => `race/${String(i).padStart(2, '0')}`);
  const stepMs = 15;

  /** For each key: the index of the one process that won it; checks that the others lost on the precondition. */
  function winnersPerKey(results: ChildResult[]): number[] {
    expect(
      results.every((r) => r.ok && r.attempts?.length === keys.length),
      JSON.stringify(results),
    ).toBe(true);
    return keys.map((key, k) => {
      const attempts = results.map((r) => r.attempts?.[k]);
      const winners = attempts.flatMap((a, i) => (a?.ok ? [i] : []));
      expect(winners.length, `winners of ${key}: ${JSON.stringify(attempts)}`).toBe(1);
      expect(attempts.filter((a) => !a?.ok).map((a) => a?.kind)).toEqual(Array(processes - 1).fill('precondition'));
      return winners[0] ?? -1;
    });
  }

  it(`of ${processes} processes racing create-only puts of the same key exactly one wins (${keys.length} keys)`, async () => {
    const root = freshRoot();
    const results = await race(Array.from({ length: processes }, (_, i) => ({ kind: 'create', root, keys, stepMs, body: `process ${i}` })));
    const winners = winnersPerKey(results);
    const store = new FsStore(root);
    for (const [k, key] of keys.entries()) {
      const stored = await store.get(key);
      expect(text(stored?.body)).toBe(`process ${winners[k]}`);
      expect(stored?.etag).toBe(results[winners[k] ?? -1]?.attempts?.[k]?.etag);
    }
  });

  it(`of ${processes} processes racing compare-and-swap puts from the same etag exactly one wins (${keys.length} keys)`, async () => {
    const root = freshRoot();
    const store = new FsStore(root);
    const etags: string[] = [];
    for (const key of keys) etags.push((await store.put(key, bytes('start'))).etag);
    const results = await race(
      Array.from({ length: processes }, (_, i) => ({ kind: 'cas', root, keys, etags, stepMs, body: `process ${i}` })),
    );
    const winners = winnersPerKey(results);
    for (const [k, key] of keys.entries()) {
      const stored = await store.get(key);
      expect(text(stored?.body)).toBe(`process ${winners[k]}`);
      expect(stored?.etag).toBe(results[winners[k] ?? -1]?.attempts?.[k]?.etag);
    }
    expect(
      (await readdir(join(root, 'race'))).filter((name) => name.startsWith('.')),
      'no lock or temp file left',
    ).toEqual([]);
  });

  it('compare-and-swap loses no update when processes increment a counter', async () => {
    const root = freshRoot();
    const store = new FsStore(root);
    await store.put('counter.json', bytes(JSON.stringify({ n: 0 })));
    const times = 25;
    const results = await race(
      Array.from({ length: 4 }, (_, i) => ({ kind: 'increment', root, key: 'counter.json', times, body: `p${i}` })),
    );
    expect(
      results.every((r) => r.ok),
      JSON.stringify(results),
    ).toBe(true);
    const final = JSON.parse(text((await store.get('counter.json'))?.body) ?? '{}') as { n: number };
    expect(final.n).toBe(4 * times);
    const conflicts = results.reduce((sum, r) => sum + (r.conflicts ?? 0), 0);
    expect(conflicts, 'the processes really raced (some compare-and-swaps lost)').toBeGreaterThan(0);
  });
});

describe('FsStore on disk', () => {
  it('reads into the buffer it is given when the object fits, and into one of its own otherwise', async () => {
    const store = await FsStore.open(freshRoot(), { durable: false });
    await store.put('chunk', bytes('payload'));
    const into = new Uint8Array(1024);
    const got = await store.get('chunk', { into });
    expect(got?.body.buffer).toBe(into.buffer);
    expect(got?.body.byteOffset).toBe(0);
    expect(text(got?.body)).toBe('payload');
    const tooSmall = new Uint8Array(3);
    const own = await store.get('chunk', { into: tooSmall });
    expect(own?.body.buffer).not.toBe(tooSmall.buffer);
    expect(own?.body.byteLength).toBe(own?.body.buffer.byteLength); // its own buffer, transferable to a worker
  });

  it('a reader never sees a half-written object while a writer rewrites it', async () => {
    const store = await FsStore.open(freshRoot(), { durable: false });
    const size = (v: number) => 4 * 1024 * 1024 + v * 4099; // every version has its own size and fill byte
    const version = (v: number) => new Uint8Array(size(v)).fill(v);
    await store.put('big', version(0));
    let writing = true;
    const writer = (async () => {
      try {
        for (let v = 1; v <= 40; v++) await store.put('big', version(v));
      } finally {
        writing = false;
      }
    })();
    let reads = 0;
    const versionsSeen = new Set<number>();
    while (writing) {
      const got = await store.get('big');
      expect(got).not.toBeNull();
      const body = got?.body ?? new Uint8Array(0);
      const v = body[0] ?? -1;
      // Whole: the size belongs to the fill byte and every byte is that fill byte.
      expect(body.length).toBe(size(v));
      expect(Buffer.from(body).equals(Buffer.from(version(v)))).toBe(true);
      versionsSeen.add(v);
      reads++;
    }
    await writer;
    expect(reads).toBeGreaterThan(1);
    expect(versionsSeen.size, 'the reader saw the object change').toBeGreaterThan(1);
    expect(text((await store.get('big'))?.body.subarray(0, 1))).toBe(String.fromCharCode(40));
  });

  it('keys cannot escape the root', async () => {
    const outer = join(base, `outer-${++serial}`);
    await mkdir(outer);
    const root = join(outer, 'stream');
    const store = await FsStore.open(root);
    await store.put('inside', bytes('in'));
    await writeFile(join(outer, 'secret'), 'outside');
    for (const key of ['../secret', '../escaped', 'a/../../secret', '/etc/passwd', `${outer}/secret`, '..', 'a/..']) {
      await expectStoreError(store.put(key, bytes('x')), 'fatal');
      await expectStoreError(store.get(key), 'fatal');
      await expectStoreError(store.head(key), 'fatal');
      await expectStoreError(store.delete([key]), 'fatal');
    }
    await expectStoreError(
      (async () => {
        for await (const _ of store.list('../')) {
          // never reached
        }
      })(),
      'fatal',
    );
    expect((await readdir(outer)).sort()).toEqual(['secret', 'stream']);
    expect(await readFile(join(outer, 'secret'), 'utf8')).toBe('outside');
  });

  it('listing ignores temporary and lock dotfiles, and they do not disturb writes', async () => {
    const root = freshRoot();
    const store = await FsStore.open(root);
    await store.put('manifest.json', bytes('m'));
    await store.put('chunks/000000000000', bytes('c'));
    // What a crashed writer leaves behind.
    await writeFile(join(root, '.tmp-0b5e1c9c-dead'), 'partial');
    await writeFile(join(root, 'chunks', '.tmp-1234'), 'partial');
    await writeFile(join(root, 'chunks', '.lock-000000000001'), '');
    await mkdir(join(root, '.hidden-dir'));
    await writeFile(join(root, '.hidden-dir', 'x'), 'x');
    expect(await keys(store, '')).toEqual(['chunks/000000000000', 'manifest.json']);
    expect(await keys(store, 'chunks/')).toEqual(['chunks/000000000000']);
    expect(await keys(store, '.')).toEqual([]);
    await store.put('chunks/000000000001', bytes('1'), { ifNoneMatch: true });
    expect(await keys(store, 'chunks/')).toEqual(['chunks/000000000000', 'chunks/000000000001']);
  });

  it('writes leave no temporary files behind, also when a condition fails', async () => {
    const root = freshRoot();
    const store = await FsStore.open(root);
    const { etag } = await store.put('k', bytes('1'), { ifNoneMatch: true });
    await expectStoreError(store.put('k', bytes('2'), { ifNoneMatch: true }), 'precondition');
    await expectStoreError(store.put('k', bytes('2'), { ifMatch: 'stale' }), 'precondition');
    await store.put('k', bytes('3'), { ifMatch: etag });
    expect(await readdir(root)).toEqual(['k']);
  });

  it('open fails with kind not-found, naming the directory, when the parent does not exist', async () => {
    const parent = join(base, `missing-${++serial}`);
    const error = await expectStoreError(FsStore.open(join(parent, 'stream')), 'not-found');
    expect(error.message).toContain(parent);
    expect(error.message).toContain('mkdir -p');
    // The same for a store made without open(), on its first write.
    const late = await expectStoreError(new FsStore(join(parent, 'stream')).put('k', bytes('x')), 'not-found');
    expect(late.message).toContain(parent);
  });

  it('open refuses a parent or a root that is a file', async () => {
    const file = join(base, `file-${++serial}`);
    await writeFile(file, 'x');
    const parentIsFile = await expectStoreError(FsStore.open(join(file, 'stream')), 'not-found');
    expect(parentIsFile.message).toContain(file);
    await expectStoreError(FsStore.open(file), 'fatal');
  });

  it('breaks a lock left by a dead process once it is older than staleLockMs', async () => {
    const root = freshRoot();
    const staleLockMs = 300;
    const store = await FsStore.open(root, { staleLockMs });
    const { etag } = await store.put('manifest.json', bytes('v1'));
    // A lock file as a writer that died between taking and releasing it would leave it.
    const lock = join(root, '.lock-manifest.json');
    await writeFile(lock, '');
    const lockedAt = (await stat(lock)).mtimeMs;
    const started = Date.now();
    const { etag: next } = await store.put('manifest.json', bytes('v2'), { ifMatch: etag });
    expect(Date.now() - lockedAt, 'waited for the lock to become stale').toBeGreaterThanOrEqual(staleLockMs);
    expect(Date.now() - started).toBeLessThan(5_000);
    expect(text((await store.get('manifest.json'))?.body)).toBe('v2');
    expect((await store.head('manifest.json'))?.etag).toBe(next);
    expect((await readdir(root)).filter((n) => n.startsWith('.'))).toEqual([]);
  });

  it('takes a lock that is already stale at once', async () => {
    const root = freshRoot();
    const store = await FsStore.open(root, { staleLockMs: 60_000 });
    const { etag } = await store.put('manifest.json', bytes('v1'));
    const lock = join(root, '.lock-manifest.json');
    await writeFile(lock, '');
    const longAgo = new Date(Date.now() - 3_600_000);
    await utimes(lock, longAgo, longAgo);
    const started = Date.now();
    await store.put('manifest.json', bytes('v2'), { ifMatch: etag });
    expect(Date.now() - started).toBeLessThan(5_000);
    expect(text((await store.get('manifest.json'))?.body)).toBe('v2');
  });
});

async function keys(store: FsStore, prefix: string): Promise<string[]> {
  const out: string[] = [];
  for await (const { key } of store.list(prefix)) out.push(key);
  return out;
}

describe('FsStore permission errors', () => {
  // The child loads this package's build: as uid 65534 it must be able to reach the repository,
  // and run this Node (not one in root's npx cache, as under npm run test:lts).
  const canSwitchUser =
    process.platform !== 'win32' &&
    process.getuid?.() === 0 &&
    reachableByOthers(fileURLToPath(new URL('.', storeFsUrl))) &&
    reachableByOthers(dirname(process.execPath));

  /** A store whose root and one object belong to root (or to us) and refuse others. */
  async function lockedStore(): Promise<string> {
    const outer = join(base, `perm-${++serial}`);
    await mkdir(outer);
    await chmod(base, 0o755);
    await chmod(outer, 0o755);
    const root = join(outer, 'stream');
    const store = await FsStore.open(root);
    await store.put('chunks/000000000000', bytes('c'));
    await store.put('manifest.json', bytes('m'));
    await chmod(join(root, 'manifest.json'), 0o600);
    await chmod(join(root, 'chunks'), 0o700);
    return root;
  }

  const calls = [
    { op: 'put', key: 'new.json' },
    { op: 'put', key: 'chunks/000000000001' },
    { op: 'get', key: 'manifest.json' },
    { op: 'delete', key: 'manifest.json' },
    { op: 'list', key: 'chunks/' },
  ];

  // Root ignores file modes, so the refusal must come from another user: a child process as uid
  // 65534 (nobody). Without root we cannot switch users, and the test is skipped.
  it.skipIf(!canSwitchUser)(
    'map to kind auth (child process as uid 65534 on a root-owned store; skipped unless run as root, with the repository reachable by that user)',
    async () => {
      const root = await lockedStore();
      const [result] = await race([{ kind: 'calls', root, calls }], { uid: 65534, gid: 65534 });
      expect(result?.ok, JSON.stringify(result)).toBe(true);
      expect(result?.calls?.map((c) => c.kind)).toEqual(['auth', 'auth', 'auth', 'auth', 'auth']);
      expect(result?.calls?.[0]?.message).toContain('permission denied');
      const store = new FsStore(root);
      expect(text((await store.get('manifest.json'))?.body)).toBe('m');
      expect(await store.head('new.json')).toBeNull();
    },
  );
});
