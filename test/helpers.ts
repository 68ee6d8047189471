import { type ChildProcess, type SpawnOptions, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdtemp, open, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { CreateBucketCommand, S3Client } from '@aws-sdk/client-s3';
import { afterAll, beforeAll } from 'vitest';

// The tests read the CLI's JSON log (stderr is a pipe: the auto format). A developer's own
// BUCKETPIPE_LOG_FORMAT or BUCKETPIPE_PROGRESS_INTERVAL must not change what they see.
process.env.BUCKETPIPE_LOG_FORMAT = 'auto';
process.env.BUCKETPIPE_PROGRESS_INTERVAL = '';

export const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..');
export const cliPath = join(repoRoot, 'packages/cli/dist/bin.js');
export const fixtures = join(repoRoot, 'test/fixtures');
export const MiB = 1024 * 1024;

export interface Finished {
  code: number | null;
  signal: NodeJS.Signals | null;
  stderr: string;
  stdout: string;
}

export interface Running {
  child: ChildProcess;
  /** stderr so far. */
  stderr(): string;
  done: Promise<Finished>;
}

/** Starts the real CLI as its own process, the way a user runs it. */
export function bucketpipe(args: string[], options: SpawnOptions & { stdoutFile?: number } = {}): Running {
  const { stdoutFile, ...spawnOptions } = options;
  const child = spawn(process.execPath, [cliPath, ...args], {
    stdio: ['ignore', stdoutFile ?? 'pipe', 'pipe'],
    ...spawnOptions,
  });
  let stderr = '';
  let stdout = '';
  child.stderr?.setEncoding('utf8').on('data', (text: string) => {
    stderr += text;
  });
  child.stdout?.setEncoding('utf8').on('data', (text: string) => {
    stdout += text;
  });
  const done = new Promise<Finished>((resolveDone) => {
    child.on('close', (code, signal) => resolveDone({ code, signal, stderr, stdout }));
  });
  return { child, stderr: () => stderr, done };
}

/** Runs the CLI to completion. */
export function run(args: string[], options: SpawnOptions & { stdoutFile?: number } = {}): Promise<Finished> {
  return bucketpipe(args, options).done;
}

/** Opens a file for a child's stdout; the caller closes it. */
export async function outputFile(path: string): Promise<{ fd: number; close: () => Promise<void> }> {
  const handle = await open(path, 'w');
  return { fd: handle.fd, close: () => handle.close() };
}

export async function tempDir(label: string): Promise<{ path: string; cleanup: () => Promise<void> }> {
  const path = await mkdtemp(join(tmpdir(), `bucketpipe-${label}-`));
  return { path, cleanup: () => rm(path, { recursive: true, force: true }) };
}

/** A describe block's working directory and the mixed test stream in it (mixedInputSuite). */
export interface MixedInputSuite {
  readonly dir: string;
  /** `<dir>/input.bin`. */
  readonly input: string;
  /** SHA-256 of the input, hex. */
  readonly sha256: string;
}

/**
 * Call in a describe block: before its tests, makes a temporary directory holding `bytes` of the
 * mixed test stream as input.bin; after them, removes it. Read the fields in hooks and tests.
 */
export function mixedInputSuite(label: string, bytes: number, seed = 1): MixedInputSuite {
  let made: { work: Awaited<ReturnType<typeof tempDir>>; sha256: string } | undefined;
  beforeAll(async () => {
    const work = await tempDir(label);
    made = { work, sha256: await writeMixedStream(join(work.path, 'input.bin'), bytes, seed) };
  });
  afterAll(() => made?.work.cleanup());
  const ready = () => {
    if (!made) throw new Error('mixedInputSuite: its fields exist only in hooks and tests, after its beforeAll');
    return made;
  };
  return {
    get dir() {
      return ready().work.path;
    },
    get input() {
      return join(ready().work.path, 'input.bin');
    },
    get sha256() {
      return ready().sha256;
    },
  };
}

/** Writes `bytes` of the mixed test stream (fixtures/mixed-source.mjs) to `path`; returns its SHA-256. */
export async function writeMixedStream(path: string, bytes: number, seed = 1): Promise<string> {
  const out = await open(path, 'w');
  try {
    await new Promise<void>((resolveDone, reject) => {
      const child = spawn(process.execPath, [join(fixtures, 'mixed-source.mjs'), String(bytes), String(seed)], {
        stdio: ['ignore', out.fd, 'inherit'],
      });
      child.on('error', reject);
      child.on('exit', (code) => (code === 0 ? resolveDone() : reject(new Error(`mixed-source exited with ${code}`))));
    });
  } finally {
    await out.close();
  }
  return sha256File(path);
}

export async function sha256File(path: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

/**
 * The stream digest bucketpipe reports, computed independently of its code: SHA-256 over the
 * SHA-256 of every `chunkSize` piece of the file, in order.
 */
export async function streamDigestOfFile(path: string, chunkSize: number): Promise<string> {
  const outer = createHash('sha256');
  let inner = createHash('sha256');
  let filled = 0;
  for await (const piece of createReadStream(path, { highWaterMark: 1024 * 1024 }) as AsyncIterable<Buffer>) {
    for (let offset = 0; offset < piece.length; ) {
      const take = Math.min(chunkSize - filled, piece.length - offset);
      inner.update(piece.subarray(offset, offset + take));
      offset += take;
      filled += take;
      if (filled === chunkSize) {
        outer.update(inner.digest());
        inner = createHash('sha256');
        filled = 0;
      }
    }
  }
  if (filled > 0) outer.update(inner.digest());
  return outer.digest('hex');
}

export async function readJson(path: string): Promise<Record<string, unknown>> {
  return JSON.parse(await readFile(path, 'utf8')) as Record<string, unknown>;
}

/** Polls until `check` returns a value or the time runs out. */
export async function waitFor<T>(check: () => Promise<T | undefined> | T | undefined, timeoutMs: number, what: string): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Calls `take()` every `everyMs` until stopped, one call at a time; `stop()` waits for the last and gives every result. */
export function sampler<T>(take: () => Promise<T>, everyMs: number): { stop: () => Promise<T[]> } {
  const samples: T[] = [];
  let running = true;
  const loop = (async () => {
    while (running) {
      samples.push(await take());
      await new Promise((r) => setTimeout(r, everyMs));
    }
  })();
  return {
    stop: async () => {
      running = false;
      await loop;
      return samples;
    },
  };
}

/** Peak resident set size (VmHWM) of a running process, in bytes; undefined once it has exited. */
export async function peakRss(pid: number): Promise<number | undefined> {
  try {
    const status = await readFile(`/proc/${pid}/status`, 'utf8');
    const kb = /VmHWM:\s+(\d+) kB/.exec(status)?.[1];
    return kb === undefined ? undefined : Number(kb) * 1024;
  } catch {
    return undefined;
  }
}

/**
 * The JSON log events on stderr, in order: the CLI writes one JSON object per line when stderr is
 * not a terminal (as here: a pipe), unless --log-format human. Lines that are not JSON (a source or
 * sink command's own messages) are left out.
 */
export function logEvents(stderr: string): Array<Record<string, unknown>> {
  const events: Array<Record<string, unknown>> = [];
  for (const line of stderr.split('\n')) {
    if (!line.startsWith('{')) continue;
    try {
      events.push(JSON.parse(line) as Record<string, unknown>);
    } catch {}
  }
  return events;
}

/**
 * stderr as the human format shows it, whichever format it was written in: a JSON event becomes
 * "bucketpipe: <msg>" ("bucketpipe: error: <msg> [<code>]", "bucketpipe: warning: <msg>"); other
 * lines stay as they are.
 */
export function logText(stderr: string): string {
  return stderr
    .split('\n')
    .map((line) => {
      const event = line.startsWith('{') ? logEvents(line)[0] : undefined;
      if (!event || typeof event.msg !== 'string') return line;
      if (event.event === 'error') return `bucketpipe: error: ${event.msg} [${String(event.code)}]`;
      return event.level === 'warn' ? `bucketpipe: warning: ${event.msg}` : `bucketpipe: ${event.msg}`;
    })
    .join('\n');
}

/** The summary the CLI logs at the end of a command: the fields of its last `summary` event (JSON log format). */
export function summaryOf(stderr: string): Record<string, unknown> {
  const summary = logEvents(stderr).findLast((event) => event.event === 'summary');
  if (!summary) throw new Error(`no summary event in stderr:\n${stderr}`);
  return summary;
}

/** The last error, as the human format writes it, "bucketpipe: error: … [BP_CODE]", from either format. */
export function errorLine(stderr: string): string {
  return (
    logText(stderr)
      .split('\n')
      .reverse()
      .find((l) => l.startsWith('bucketpipe: error:')) ?? `(no error line; stderr was: ${stderr})`
  );
}

/**
 * Makes an SDK client without the SDK's multi-line warning about Node 20 in the test log. The
 * switch is set only while the client is made (the SDK checks it then), so that the CLI processes
 * the tests start later still have to silence it themselves.
 */
function withoutSdkNodeVersionWarning<T>(make: () => T): T {
  const name = 'AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED';
  const before = process.env[name];
  process.env[name] = 'true';
  try {
    return make();
  } finally {
    if (before === undefined) delete process.env[name];
    else process.env[name] = before;
  }
}

/** Creates a bucket on the test S3 server (radosgw on 127.0.0.1), as its administrator. */
export async function createS3Bucket(
  s3: { endpoint: string; region: string; accessKeyId: string; secretAccessKey: string },
  bucket: string,
): Promise<void> {
  const client = withoutSdkNodeVersionWarning(
    () =>
      new S3Client({
        endpoint: s3.endpoint,
        region: s3.region,
        forcePathStyle: true,
        credentials: { accessKeyId: s3.accessKeyId, secretAccessKey: s3.secretAccessKey },
      }),
  );
  try {
    await client.send(new CreateBucketCommand({ Bucket: bucket }));
  } finally {
    client.destroy();
  }
}

/** The environment a CLI process needs to reach the test S3 server through the standard AWS chain. */
export function s3Env(s3: { accessKeyId: string; secretAccessKey: string; region: string }): NodeJS.ProcessEnv {
  return {
    ...process.env,
    AWS_ACCESS_KEY_ID: s3.accessKeyId,
    AWS_SECRET_ACCESS_KEY: s3.secretAccessKey,
    AWS_REGION: s3.region,
    AWS_EC2_METADATA_DISABLED: 'true',
  };
}
