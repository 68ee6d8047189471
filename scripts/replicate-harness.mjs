// What the replication soak and measurement scripts share: real zfs-fuse pools (test/servers/zfs.ts),
// optionally Ceph radosgw behind the fault proxy (test/servers/ceph-up.sh, fault-proxy.ts), a writer
// that keeps changing files on the source dataset at a steady rate, and the replication daemons as
// child processes. The test servers are TypeScript that imports only node:*: transpiled in memory
// with the repository's TypeScript (type stripping only, no copy to keep in sync).
import { spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
export const CLI = join(ROOT, 'packages/cli/dist/bin.js');
export const MiB = 1024 * 1024;
export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

export function workDir(label) {
  const work = join(tmpdir(), `bucketpipe-${label}-${process.pid}`);
  mkdirSync(work, { recursive: true });
  return work;
}

/** Imports a test server module written in TypeScript (node:* imports only). */
export async function importTs(relative, work) {
  const ts = (await import('typescript')).default;
  const out = ts.transpileModule(readFileSync(join(ROOT, relative), 'utf8'), {
    compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022 },
  });
  const file = join(work, relative.replaceAll('/', '-').replace(/\.ts$/, '.mjs'));
  writeFileSync(file, out.outputText);
  return import(pathToFileURL(file).href);
}

/** mulberry32: the same moments for the same seed. */
export function seeded(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** A throwaway Ceph radosgw with a bucket; `stop()` tears it down. */
export async function startS3(work, bucket) {
  const dir = join(work, 'ceph');
  const up = spawnSync('bash', [join(ROOT, 'test/servers/ceph-up.sh'), dir], { encoding: 'utf8', stdio: ['ignore', 'pipe', 2] });
  if (up.status !== 0) throw new Error(`ceph-up.sh failed (exit ${up.status ?? up.signal})`);
  const vars = Object.fromEntries(
    up.stdout
      .trim()
      .split('\n')
      .map((line) => line.split(/=(.*)/s).slice(0, 2)),
  );
  const env = {
    ...process.env,
    AWS_ACCESS_KEY_ID: vars.BUCKETPIPE_TEST_S3_ACCESS_KEY_ID,
    AWS_SECRET_ACCESS_KEY: vars.BUCKETPIPE_TEST_S3_SECRET_ACCESS_KEY,
    AWS_REGION: 'us-east-1',
    AWS_EC2_METADATA_DISABLED: 'true',
  };
  const { S3Client, CreateBucketCommand } = await import('@aws-sdk/client-s3');
  const client = new S3Client({
    endpoint: vars.BUCKETPIPE_TEST_S3_ENDPOINT,
    region: 'us-east-1',
    forcePathStyle: true,
    credentials: { accessKeyId: env.AWS_ACCESS_KEY_ID, secretAccessKey: env.AWS_SECRET_ACCESS_KEY },
  });
  await client.send(new CreateBucketCommand({ Bucket: bucket }));
  return {
    endpoint: vars.BUCKETPIPE_TEST_S3_ENDPOINT,
    env,
    client,
    stop: () => spawnSync('bash', [join(ROOT, 'test/servers/ceph-down.sh'), dir], { stdio: 'ignore' }),
  };
}

/**
 * Rewrites `files` files of 1 MiB on `dir` in turn at `bytesPerSecond`, each half random, half
 * repetitive (like database pages: some compress, some do not), until stopped. Returns the bytes
 * written. Rewriting in place keeps the dataset's size bounded however long it runs.
 */
export function steadyWriter(dir, bytesPerSecond, files = 64) {
  let running = true;
  let written = 0;
  const text = Buffer.from('INSERT INTO pgdata VALUES (42, now(), repeat(x, 100));\n'.repeat(10_000)).subarray(0, MiB / 2);
  const done = (async () => {
    const started = performance.now();
    for (let i = 0; running; i++) {
      const handle = await open(join(dir, `table-${i % files}.dat`), 'w');
      await handle.write(Buffer.concat([randomBytes(MiB / 2), text]));
      await handle.close();
      written += MiB;
      const due = started + (written / bytesPerSecond) * 1000;
      const wait = due - performance.now();
      if (wait > 0) await sleep(wait);
    }
    return written;
  })();
  return {
    stop: async () => {
      running = false;
      return done;
    },
    get written() {
      return written;
    },
  };
}

/** Starts the CLI; `done` resolves with code, signal and stderr. */
export function cli(args, { env = process.env, children } = {}) {
  const child = spawn(process.execPath, [CLI, ...args], { env, stdio: ['ignore', 'ignore', 'pipe'] });
  children?.add(child);
  let stderr = '';
  child.stderr.setEncoding('utf8').on('data', (t) => {
    stderr += t;
    if (stderr.length > 4 * MiB) stderr = stderr.slice(-MiB);
  });
  const done = new Promise((ok) =>
    child.on('close', (code, signal) => {
      children?.delete(child);
      ok({ code, signal, stderr });
    }),
  );
  return { child, done, stderr: () => stderr };
}

/** The CLI's JSON log events. */
export const eventsOf = (stderr) =>
  stderr.split('\n').flatMap((line) => {
    try {
      return line.startsWith('{') ? [JSON.parse(line)] : [];
    } catch {
      return [];
    }
  });

export const lastLine = (stderr) => {
  const last = eventsOf(stderr).at(-1);
  return last ? `${last.msg}${last.code ? ` [${last.code}]` : ''}` : (stderr.trim().split('\n').at(-1) ?? '');
};

export function percentile(values, p) {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

export function removeWork(work) {
  if (existsSync(work)) rmSync(work, { recursive: true, force: true });
}
