#!/usr/bin/env node
// The throughput benchmark behind `npm run bench`: bucketpipe send | receive through a local
// directory stream, against the pipeline it replaces (pbzip2 + mbuffer) and the native ceiling
// (zstd | zstd -d). What each case measures and how to read the table: docs/PERFORMANCE.md.
import { spawn, spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import {
  closeSync,
  createReadStream,
  existsSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  rmdirSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { availableParallelism, cpus, loadavg, release, totalmem } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const CLI = join(ROOT, 'packages/cli/dist/bin.js');
const BUILT_FILES = [CLI, join(ROOT, 'packages/core/dist/codec/codec-worker.js'), join(ROOT, 'packages/store-fs/dist/index.js')];
const MAKE_CORPUS = join(ROOT, 'bench/make-corpus.sh');
const S3_BASELINE = join(ROOT, 'bench/s3-baseline.mjs');
const LINK_STREAM = join(ROOT, 'bench/link-stream.mjs');
const LINK_SOURCE = join(ROOT, 'test/servers/link.ts');
/** Case (f)'s link by default (--link-rate, --link-delay): what one TCP connection got on the seed's path, and its latency. */
const LINK = { bytesPerSecond: 10 * 1e6, delayMs: 20 };
const LINK_CONCURRENCY = [1, 4, 8];
const CEPH_UP = join(ROOT, 'test/servers/ceph-up.sh');
const CEPH_DOWN = join(ROOT, 'test/servers/ceph-down.sh');
const CORPUS_DIR = join(ROOT, 'bench/.corpus');
const WORK_ROOT = join(ROOT, 'bench/.work');
// A directory of this process's own: a second bench (or a failing one) must not delete ours.
const WORK_DIR = join(WORK_ROOT, `run-${process.pid}`);
const TIME = '/usr/bin/time';
const MB = 1e6;
const MiB = 2 ** 20;
const DEFAULT_CHUNK_SIZE = 16 * MiB;
/**
 * The manifest is rewritten, and polled, every 250 ms instead of the default 1 s: with 1 s the
 * receiver of a 3-second run finishes 0 to 2 s after the sender depending on where the polls fall,
 * which measures the polling phase, not the pipeline (a multi-terabyte transfer never notices it).
 */
const FOLLOW_SEND = ['--manifest-interval', '250ms'];
const FOLLOW_RECEIVE = ['--poll-interval', '250ms'];
/** Makes the CLI report its main thread's busy time as it exits (packages/cli/src/main-thread-report.ts). */
const MAIN_THREAD_ENV = { ...process.env, BUCKETPIPE_REPORT_MAIN_THREAD: '1' };
/** send's and receive's default --buffer: the memory target is this plus 100 MiB per process (issue 10). */
const DEFAULT_BUFFER_MiB = 512;
const GB = 1e9;

const USAGE = `usage: npm run bench [-- options]      (or: node bench/run.mjs [options])

Measures MB/s (raw input bytes / wall time) and peak RSS of:
  (a) bucketpipe send | bucketpipe receive > /dev/null through a local directory stream, with
      default options except a 250 ms manifest/poll interval; once with durable writes (fsync,
      the default) and once with send --no-fsync
  (b) pbzip2 -c -p2 | mbuffer | mbuffer | pbzip2 -d -c > /dev/null   (the pipeline it replaces)
  (c) zstd -1 -T0 -c | zstd -d -c > /dev/null                         (the native ceiling)
  (d) bucketpipe send | bucketpipe receive > /dev/null through S3 with default options: a Ceph
      radosgw the bench starts on 127.0.0.1 (test/servers/ceph-up.sh); with the requests per chunk
      of each side (its "others" CPU column is mostly radosgw and the OSD)
  (e) the same bytes as plain SDK PutObject/GetObject of 16 MiB objects at the same concurrency
      (bench/s3-baseline.mjs): what S3 costs without bucketpipe
  (f) a slow link (test/servers/link.ts: 10 MB/s per TCP connection each way, 20 ms each way)
      between the processes and radosgw: bucketpipe send | receive with default options
      (--concurrency 16 for S3), then with --concurrency 1, 4 and 8 on both sides, against one
      stream through one connection of the same link (zstd -1 -T0 | bench/link-stream.mjs |
      zstd -d); on the first --link-slice bytes of the corpus
and, per process of (a): CPU s per GB next to the zstd stage of (c) doing the same work, the main
thread's CPU s per GB (the CLI reports it under BUCKETPIPE_REPORT_MAIN_THREAD=1) and peak RSS

options:
  --corpus FILE     input file (default: $BUCKETPIPE_BENCH_CORPUS, else bench/.corpus/pgdata.tar,
                    made by bench/make-corpus.sh on first use)
  --rows N          rows of the generated PostgreSQL corpus (default 4500000, about 1 GiB)
  --runs N          runs of (a) and (c) (default 3)
  --seed-runs N     runs of (b) (default 1: pbzip2 does about 10 MB/s)
  --stat S          median or best of the runs (default median)
  --cases LIST      which cases to run, e.g. a,c (default a,b,c,enc,s3,f; enc is (a) encrypted; s3 means d and e)
  --link-slice SIZE MiB of the corpus that case (f) moves (default 512; 0: the whole corpus)
  --link-rate MB/s  case (f)'s cap per connection and direction (default 10; lower it to see the
                    link's limit on a machine whose CPU is busy)
  --link-delay MS   case (f)'s one-way delay (default 20)
  --link-concurrency LIST  case (f)'s rows besides the default options (default 1,4,8; empty: none)
  --settle SECONDS  before each run, wait up to this long for a quiet second (under 0.25 cores
                    busy machine-wide) so a run does not start amid someone's build (default 60; 0: off)
  -h, --help
`;

/** Child process groups still running, so that no exit path leaves one behind. */
const live = new Set();

class BenchError extends Error {}

main().then(
  (code) => {
    process.exitCode = code;
  },
  (error) => {
    killAll();
    stopS3();
    removeWorkDir();
    process.stderr.write(error instanceof BenchError ? `bench: error: ${error.message}\n` : `bench: internal error\n${error.stack}\n`);
    process.exitCode = 1;
  },
);

async function main() {
  const options = parseOptions();
  if (options.help) {
    process.stdout.write(USAGE);
    return 0;
  }
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
    process.once(signal, () => {
      process.stderr.write(`\nbench: ${signal}, stopping\n`);
      killAll();
      stopS3();
      removeWorkDir();
      process.exit(130);
    });
  }
  assertCliBuilt();
  warnAboutOtherBenches();
  ensureTools(options.cases);
  const corpus = await prepareCorpus(options);
  const machine = machineFacts();
  const s3 = options.cases.has('s3') || options.cases.has('f') ? await startS3() : undefined;
  try {
    const slice = options.cases.has('f') ? await prepareSlice(corpus, options.linkSliceBytes) : undefined;
    const results = await runCases(options, corpus, s3, slice);
    printReport({ options, corpus, slice, machine, results });
  } finally {
    s3?.stop();
  }
  return 0;
}

// ---------------------------------------------------------------------------------------------
// Options, prerequisites, corpus

function parseOptions() {
  let parsed;
  try {
    parsed = parseArgs({
      options: {
        corpus: { type: 'string' },
        rows: { type: 'string' },
        runs: { type: 'string', default: '3' },
        'seed-runs': { type: 'string', default: '1' },
        stat: { type: 'string', default: 'median' },
        cases: { type: 'string', default: 'a,b,c,enc,s3,f' },
        'link-slice': { type: 'string', default: '512' },
        'link-rate': { type: 'string', default: String(LINK.bytesPerSecond / MB) },
        'link-delay': { type: 'string', default: String(LINK.delayMs) },
        'link-concurrency': { type: 'string', default: LINK_CONCURRENCY.join(',') },
        settle: { type: 'string', default: '60' },
        help: { type: 'boolean', short: 'h' },
      },
      strict: true,
    }).values;
  } catch (error) {
    throw new BenchError(`${error.message} (see: node bench/run.mjs --help)`);
  }
  const settle = Number(parsed.settle);
  if (!Number.isFinite(settle) || settle < 0) throw new BenchError(`--settle ${parsed.settle}: must be a number of seconds, 0 or more`);
  const positive = (name) => {
    const value = Number(parsed[name]);
    if (!Number.isSafeInteger(value) || value < 1) throw new BenchError(`--${name} ${parsed[name]}: must be a positive whole number`);
    return value;
  };
  if (!['median', 'best'].includes(parsed.stat)) throw new BenchError(`--stat ${parsed.stat}: use median or best`);
  const cases = new Set(parsed.cases.split(',').map((c) => c.trim()));
  for (const c of cases)
    if (!['a', 'b', 'c', 'enc', 's3', 'f'].includes(c)) throw new BenchError(`--cases: unknown case "${c}"; use a, b, c, enc, s3 and/or f`);
  const linkSlice = Number(parsed['link-slice']);
  if (!Number.isSafeInteger(linkSlice) || linkSlice < 0)
    throw new BenchError(`--link-slice ${parsed['link-slice']}: must be a whole number of MiB, 0 or more`);
  const linkNumber = (name) => {
    const value = Number(parsed[name]);
    if (!Number.isFinite(value) || value < 0 || (name === 'link-rate' && value === 0)) {
      throw new BenchError(`--${name} ${parsed[name]}: must be a number${name === 'link-rate' ? ' above 0' : ', 0 or more'}`);
    }
    return value;
  };
  const linkConcurrency = parsed['link-concurrency'] === '' ? [] : parsed['link-concurrency'].split(',').map(Number);
  if (linkConcurrency.some((n) => !Number.isSafeInteger(n) || n < 1)) {
    throw new BenchError(`--link-concurrency ${parsed['link-concurrency']}: must be whole numbers above 0, comma-separated, or empty`);
  }
  const corpus = parsed.corpus ?? process.env.BUCKETPIPE_BENCH_CORPUS;
  if (corpus !== undefined && parsed.rows !== undefined) {
    throw new BenchError('--rows only applies to the generated corpus; it cannot be combined with --corpus / BUCKETPIPE_BENCH_CORPUS');
  }
  return {
    help: parsed.help === true,
    corpus: corpus === undefined || corpus === '' ? undefined : resolve(corpus),
    rows: parsed.rows === undefined ? undefined : positive('rows'),
    runs: positive('runs'),
    seedRuns: positive('seed-runs'),
    stat: parsed.stat,
    cases,
    settle,
    linkSliceBytes: linkSlice * MiB,
    link: { bytesPerSecond: linkNumber('link-rate') * MB, delayMs: linkNumber('link-delay') },
    linkConcurrency,
  };
}

function assertCliBuilt() {
  const missing = BUILT_FILES.filter((file) => !existsSync(file));
  if (missing.length > 0) {
    throw new BenchError(
      `the bucketpipe CLI is not built (missing ${missing.map((f) => f.slice(ROOT.length + 1)).join(', ')}): run "npm run build" (or "npx tsc -b") first, or use "npm run bench", which builds`,
    );
  }
  const version = spawnSync(process.execPath, [CLI, '--version'], { encoding: 'utf8' });
  if (version.status !== 0) throw new BenchError(`"node ${CLI} --version" failed:\n${version.stderr}`);
}

function ensureTools(cases) {
  const needed = [{ command: TIME, pkg: 'time' }];
  if (cases.has('b')) needed.push({ command: 'pbzip2', pkg: 'pbzip2' }, { command: 'mbuffer', pkg: 'mbuffer' });
  if (cases.has('c') || cases.has('f')) needed.push({ command: 'zstd', pkg: 'zstd' });
  if (cases.has('s3') || cases.has('f')) {
    needed.push({ command: 'ceph-mon', pkg: 'ceph-mon' }, { command: 'ceph-osd', pkg: 'ceph-osd' }, { command: 'radosgw', pkg: 'radosgw' });
    needed.push({ command: 'curl', pkg: 'curl' });
  }
  const missing = needed.filter(
    ({ command }) => spawnSync('sh', ['-c', 'command -v "$1"', 'sh', command], { stdio: 'ignore' }).status !== 0,
  );
  if (missing.length === 0) return;
  const packages = missing.map((tool) => tool.pkg);
  if (process.getuid?.() !== 0) {
    throw new BenchError(`missing tools: ${packages.join(' ')}; install them (apt-get install ${packages.join(' ')}) or run as root`);
  }
  process.stderr.write(`bench: installing missing tools with apt-get: ${packages.join(' ')}\n`);
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  // apt's stdout goes to our stderr: stdout is reserved for the report.
  const stdio = ['ignore', 2, 2];
  const apt = (...args) => spawnSync('apt-get', args, { stdio, env }).status === 0;
  if (!(apt('update', '-qq') && apt('install', '-y', '-qq', '--no-install-recommends', ...packages))) {
    throw new BenchError(`apt-get could not install ${packages.join(' ')}`);
  }
}

async function prepareCorpus(options) {
  let path = options.corpus;
  if (path === undefined) {
    path = join(CORPUS_DIR, options.rows === undefined ? 'pgdata.tar' : `pgdata-${options.rows}-rows.tar`);
    if (!existsSync(path)) {
      process.stderr.write(`bench: making the corpus ${path} (once; about a minute per GiB)\n`);
      const args = [MAKE_CORPUS, path, ...(options.rows === undefined ? [] : [String(options.rows)])];
      const made = spawnSync('bash', args, { stdio: ['ignore', 2, 2] });
      if (made.status !== 0) throw new BenchError(`bench/make-corpus.sh failed (exit ${made.status ?? made.signal})`);
    }
  } else if (!existsSync(path)) {
    throw new BenchError(`corpus ${path} does not exist`);
  }
  const info = statSync(path);
  if (!info.isFile() || info.size === 0) throw new BenchError(`corpus ${path} is not a non-empty file`);
  const bytes = info.size;
  process.stderr.write(`bench: corpus ${path}: ${(bytes / MiB).toFixed(0)} MiB; hashing it (also warms the page cache)\n`);
  const { sha256, digest } = await hashesOfStream(createReadStream(path, { highWaterMark: MiB }));
  const zstdBytes = await zstdSize(path);
  return { path, bytes, sha256, digest, zstdRatio: bytes / zstdBytes };
}

/** Case (f)'s input: the first `bytes` of the corpus, as a file of its own (the whole corpus for 0). */
async function prepareSlice(corpus, bytes) {
  if (bytes === 0 || bytes >= corpus.bytes) return { ...corpus, name: 'the whole corpus' };
  mkdirSync(WORK_DIR, { recursive: true });
  const path = join(WORK_DIR, 'link-slice.bin');
  const copied = spawnSync('head', ['-c', String(bytes), corpus.path], { stdio: ['ignore', openSync(path, 'w'), 2] });
  if (copied.status !== 0) throw new BenchError(`could not copy the first ${bytes} bytes of ${corpus.path} to ${path}`);
  const { sha256, digest } = await hashesOfStream(createReadStream(path, { highWaterMark: MiB }));
  const zstdBytes = await zstdSize(path);
  return { path, bytes, sha256, digest, zstdRatio: bytes / zstdBytes, name: `its first ${bytes / MiB} MiB` };
}

/**
 * SHA-256 of the bytes, and the stream digest bucketpipe reports for them with its default 16 MiB
 * chunks (SHA-256 over every chunk's SHA-256), computed here independently of its code.
 */
async function hashesOfStream(stream) {
  const whole = createHash('sha256');
  const outer = createHash('sha256');
  let inner = createHash('sha256');
  let filled = 0;
  for await (const piece of stream) {
    whole.update(piece);
    for (let offset = 0; offset < piece.length; ) {
      const take = Math.min(DEFAULT_CHUNK_SIZE - filled, piece.length - offset);
      inner.update(piece.subarray(offset, offset + take));
      offset += take;
      filled += take;
      if (filled === DEFAULT_CHUNK_SIZE) {
        outer.update(inner.digest());
        inner = createHash('sha256');
        filled = 0;
      }
    }
  }
  if (filled > 0) outer.update(inner.digest());
  return { sha256: whole.digest('hex'), digest: outer.digest('hex') };
}

/** Size of the corpus under `zstd -1` (the whole stream as one frame): the reference ratio. */
async function zstdSize(path) {
  const proc = startProcess('zstd', ['-1', '-T0', '-c', path], { stdout: 'pipe', label: 'zstd -1 (ratio)' });
  let size = 0;
  for await (const piece of proc.child.stdout) size += piece.length;
  await waitAll([proc]);
  return size;
}

function machineFacts() {
  const model = cpus()[0]?.model.trim() ?? 'unknown CPU';
  const fsType = spawnSync('df', ['--output=fstype', ROOT], { encoding: 'utf8' }).stdout.trim().split('\n').at(-1);
  const zstdVersion = spawnSync('zstd', ['-V'], { encoding: 'utf8' })
    .stdout?.trim()
    .split(/[\s,]+/)
    .find((w) => /^v\d/.test(w));
  return {
    cores: availableParallelism(),
    model,
    memoryGiB: totalmem() / 2 ** 30,
    node: process.version,
    kernel: release(),
    fsType,
    zstd: zstdVersion ?? 'n/a',
    loadBefore: loadavg()[0],
    code: codeVersion(),
  };
}

/** The commit measured, and whether the work tree differed from it (other people edit packages/). */
function codeVersion() {
  const git = (...args) => spawnSync('git', ['-C', ROOT, ...args], { encoding: 'utf8' });
  const head = git('rev-parse', '--short', 'HEAD');
  if (head.status !== 0) return 'unknown (not a git checkout)';
  const dirty = git('status', '--porcelain', '--', 'packages').stdout.trim() !== '';
  return `${head.stdout.trim()}${dirty ? ' + uncommitted changes in packages/' : ''}`;
}

// ---------------------------------------------------------------------------------------------
// Cases

function defineCases(options) {
  const cases = [];
  if (options.cases.has('a')) {
    cases.push(bucketpipeCase('a', '(a) bucketpipe send | receive (fsync)', {}, options.runs));
    cases.push(bucketpipeCase('a-nofsync', '(a) bucketpipe send --no-fsync | receive', { send: ['--no-fsync'] }, options.runs));
  }
  if (options.cases.has('enc')) {
    cases.push(bucketpipeCase('a-enc', '(a) same, --encryption-key-file (AES-256-GCM)', { encrypted: true }, options.runs));
  }
  if (options.cases.has('b')) {
    const mbuffer = ['mbuffer', '-q', '-s', '12M', '-m', '1G'];
    const stages = [['pbzip2', '-c', '-p2'], mbuffer, mbuffer, ['pbzip2', '-d', '-c', '-p2']];
    cases.push(pipelineCase('b', '(b) pbzip2 -p2 | mbuffer | mbuffer | pbzip2 -d', stages, options.seedRuns));
  }
  if (options.cases.has('s3')) {
    cases.push(s3BucketpipeCase('d', '(d) bucketpipe send | receive via S3 (radosgw)', options.runs));
    cases.push(s3BaselineCase('e', '(e) SDK PutObject | GetObject, 16 MiB objects', options.runs));
  }
  if (options.cases.has('f')) {
    const { bytesPerSecond, delayMs } = options.link;
    const label = (what) => `(f) ${what}, link ${bytesPerSecond / MB} MB/s/conn ${delayMs} ms`;
    cases.push(linkSingleStreamCase('f-single', label('one TCP stream, zstd -1 -T0|zstd -d'), options.runs));
    cases.push(linkBucketpipeCase('f-default', label('bucketpipe, default options (16)'), [], options.runs));
    for (const n of options.linkConcurrency) {
      cases.push(linkBucketpipeCase(`f-c${n}`, label(`bucketpipe --concurrency ${n}`), ['--concurrency', String(n)], options.runs));
    }
  }
  if (options.cases.has('c')) {
    cases.push(
      pipelineCase(
        'c',
        '(c) zstd -1 -T0 | zstd -d',
        [
          ['zstd', '-1', '-T0', '-c'],
          ['zstd', '-d', '-c'],
        ],
        options.runs,
      ),
    );
  }
  return cases;
}

/**
 * Runs the cases round-robin (run 1 of each, then run 2 of each, ...) so that slow drift of a
 * noisy shared machine spreads over all cases instead of penalising whichever ran last.
 */
async function runCases(options, corpus, s3, slice) {
  const cases = defineCases(options);
  const results = new Map(cases.map((c) => [c.id, { case: c, runs: [] }]));
  const rounds = Math.max(...cases.map((c) => c.runs));
  for (let round = 1; round <= rounds; round++) {
    for (const benchCase of cases) {
      if (round > benchCase.runs) continue;
      const dir = freshWorkDir(`${benchCase.id}-${round}`);
      try {
        if (options.settle > 0) await settle(options.settle);
        process.stderr.write(`bench: ${benchCase.label}, run ${round}/${benchCase.runs} ... `);
        const input = benchCase.id.startsWith('f') ? slice : corpus;
        const run = await benchCase.run(input, dir, { verifyWithSeparateReceive: round === 1, s3, round, linkOptions: options.link });
        process.stderr.write(`${(input.bytes / MB / run.seconds).toFixed(1)} MB/s (${run.seconds.toFixed(2)} s)\n`);
        results.get(benchCase.id).runs.push(run);
      } catch (error) {
        process.stderr.write('FAILED\n');
        throw error;
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    }
  }
  removeWorkDir();
  return [...results.values()];
}

/** Waits, at most `limitSeconds`, for a second in which the whole machine is nearly idle. */
async function settle(limitSeconds) {
  const started = performance.now();
  for (;;) {
    const before = machineCpu();
    await sleep(1000);
    const busyCores = machineCpuSince(before).busy;
    const waited = (performance.now() - started) / 1000;
    if (busyCores < 0.25) {
      if (waited > 2) process.stderr.write(`bench: waited ${waited.toFixed(0)} s for the machine to quiet down\n`);
      return;
    }
    if (waited >= limitSeconds) {
      process.stderr.write(
        `bench: the machine is still busy (${busyCores.toFixed(2)} cores) after ${waited.toFixed(0)} s; running anyway\n`,
      );
      return;
    }
  }
}

/** `options.send`: extra send options; `options.encrypted`: both sides use a fresh key file. */
function bucketpipeCase(id, label, options, runs) {
  return {
    id,
    label,
    runs,
    async run(corpus, dir, { verifyWithSeparateReceive }) {
      const stream = join(dir, 'stream');
      const input = openSync(corpus.path, 'r');
      const devNull = openSync('/dev/null', 'w');
      const keyOptions = options.encrypted ? ['--encryption-key-file', writeKeyFile(dir)] : [];
      const sendOptions = [...(options.send ?? []), ...keyOptions];
      let procs;
      try {
        const cpuBefore = machineCpu();
        const started = performance.now();
        procs = [
          startTimed(dir, 'send', process.execPath, [CLI, 'send', stream, '-q', ...FOLLOW_SEND, ...sendOptions], {
            stdin: input,
            env: MAIN_THREAD_ENV,
          }),
          startTimed(dir, 'receive', process.execPath, [CLI, 'receive', stream, '-q', ...FOLLOW_RECEIVE, ...keyOptions], {
            stdout: devNull,
            env: MAIN_THREAD_ENV,
          }),
        ];
        await waitAll(procs, timeoutFor(corpus));
        const seconds = (Math.max(...procs.map((p) => p.endedAt)) - started) / 1000;
        const machine = machineCpuSince(cpuBefore);
        for (const p of procs) checkSummary(p, corpus, options.encrypted ? summaryOf(procs[0]).digest : corpus.digest);
        if (verifyWithSeparateReceive) await verifyReceivedBytes(stream, corpus, keyOptions);
        const [send, receive] = procs.map((p) => {
          const mainThread = mainThreadOf(p);
          return {
            ...readTimeFile(p),
            exitSeconds: (p.endedAt - started) / 1000,
            mainThreadSeconds: mainThread.cpuSeconds,
            mainThreadBusySeconds: mainThread.busySeconds,
            mainThreadStart: mainThread.streamStart,
          };
        });
        return { seconds, machine, processes: { send, receive }, ratio: summaryOf(procs[0]).ratio };
      } finally {
        closeSync(input);
        closeSync(devNull);
      }
    },
  };
}

/** Case (f): both sides through S3 behind a fresh link (each run starts with no connection open). */
function linkBucketpipeCase(id, label, args, runs) {
  return s3BucketpipeCase(id, label, runs, { args, viaLink: true });
}

/**
 * Both sides through S3 at once; also counts the requests each side made per chunk. `args` go to
 * both commands; with `viaLink`, they reach radosgw through a link (--link-rate, --link-delay).
 */
function s3BucketpipeCase(id, label, runs, { args = [], viaLink = false } = {}) {
  return {
    id,
    label,
    runs,
    perProcessRss: true,
    async run(corpus, dir, { s3, round, linkOptions }) {
      const prefix = `bench-${process.pid}-${id}-${round}`;
      const url = `s3://${s3.bucket}/${prefix}`;
      const link = viaLink ? await startBenchLink(s3.endpoint, linkOptions) : undefined;
      const endpoint = link ? `http://${link.proxy.address}` : s3.endpoint;
      const storeArgs = ['--s3-endpoint', endpoint, '--s3-path-style', ...args];
      const input = openSync(corpus.path, 'r');
      const devNull = openSync('/dev/null', 'w');
      try {
        const cpuBefore = machineCpu();
        const started = performance.now();
        const procs = [
          // Default manifest and poll intervals (1 s): the requests per chunk are what a user pays.
          startTimed(dir, 'send', process.execPath, [CLI, 'send', url, '-q', ...storeArgs], { stdin: input, env: s3.env }),
          startTimed(dir, 'receive', process.execPath, [CLI, 'receive', url, '-q', ...storeArgs], {
            stdout: devNull,
            env: s3.env,
          }),
        ];
        await waitAll(procs, timeoutFor(corpus));
        const seconds = (Math.max(...procs.map((p) => p.endedAt)) - started) / 1000;
        const machine = machineCpuSince(cpuBefore);
        for (const p of procs) checkSummary(p, corpus);
        const [sent, received] = procs.map(summaryOf);
        const [send, receive] = procs.map((p) => ({ ...readTimeFile(p), exitSeconds: (p.endedAt - started) / 1000 }));
        const requests = {
          sendPutsPerChunk: sent.requests.put / sent.chunks,
          receiveGetsPerChunk: received.requests.get / received.chunks,
          sendRequests: sent.requests,
          receiveRequests: received.requests,
          chunks: sent.chunks,
        };
        return { seconds, machine, processes: { send, receive }, ratio: sent.ratio, requests, link: link?.report() };
      } finally {
        closeSync(input);
        closeSync(devNull);
        await link?.proxy.close();
        await s3.deletePrefix(prefix);
      }
    },
  };
}

/**
 * Case (f)'s baseline: the stream compressed by zstd -1 -T0, through one TCP connection of the
 * link, into zstd -d; every byte counted at the end. Two pipelines: the receiving one listens first.
 */
function linkSingleStreamCase(id, label, runs) {
  return {
    id,
    label,
    runs,
    async run(corpus, dir, { linkOptions }) {
      const portFile = join(dir, 'port');
      const countFile = join(dir, 'count');
      const receiveTime = join(dir, 'receive.time');
      const sendTime = join(dir, 'send.time');
      const timed = (file, command) => `${TIME} -f '%M %U %S' -o "${file}" ${command}`;
      const cpuBefore = machineCpu();
      const receiving = startProcess(
        'bash',
        [
          '-o',
          'pipefail',
          '-c',
          `${timed(receiveTime, `node "${LINK_STREAM}" receive "$1"`)} | ${timed(`${receiveTime}.zstd`, 'zstd -d -c')} | wc -c > "$2"`,
          'bench',
          portFile,
          countFile,
        ],
        { label: `${label} (receiving end)` },
      );
      let link;
      try {
        const port = await waitForFile(portFile, receiving);
        link = await startBenchLink(`http://127.0.0.1:${port}`, linkOptions);
        const started = performance.now();
        const sending = startProcess(
          'bash',
          [
            '-o',
            'pipefail',
            '-c',
            `${timed(`${sendTime}.zstd`, 'zstd -1 -T0 -c')} < "$1" | ${timed(sendTime, `node "${LINK_STREAM}" send "$2"`)}`,
            'bench',
            corpus.path,
            String(link.proxy.port),
          ],
          { label: `${label} (sending end)` },
        );
        await waitAll([sending, receiving], timeoutFor(corpus));
        const seconds = (Math.max(sending.endedAt, receiving.endedAt) - started) / 1000;
        const machine = machineCpuSince(cpuBefore);
        const count = Number(readFileSync(countFile, 'utf8').trim());
        if (count !== corpus.bytes) throw new BenchError(`${label} delivered ${count} bytes, the input has ${corpus.bytes}`);
        const processes = {
          'zstd -1': parseTimeFile(`${sendTime}.zstd`, label),
          'node send': parseTimeFile(sendTime, label),
          'node receive': parseTimeFile(receiveTime, label),
          'zstd -d': parseTimeFile(`${receiveTime}.zstd`, label),
        };
        return { seconds, machine, processes, link: link.report() };
      } finally {
        killGroup(receiving);
        await link?.proxy.close();
      }
    },
  };
}

/** Waits for a process to write a file (a port number), or to fail first. */
async function waitForFile(path, proc) {
  for (let waited = 0; waited < 10_000; waited += 20) {
    if (existsSync(path)) {
      const text = readFileSync(path, 'utf8').trim();
      if (text !== '') return Number(text);
    }
    if (proc.endedAt !== undefined) throw new BenchError(`${proc.label} exited before listening; its stderr:\n${proc.stderr}`);
    await sleep(20);
  }
  throw new BenchError(`${proc.label} did not listen within 10 s`);
}

let linkModule;

/**
 * A link (test/servers/link.ts, transpiled as the scripts do) in this process, in front of
 * `target`. `report()` gives its counts and the CPU this process spent meanwhile (the proxy's,
 * as this process does little else while a case runs).
 */
async function startBenchLink(target, linkOptions) {
  if (linkModule === undefined) {
    const ts = (await import('typescript')).default;
    const out = ts.transpileModule(readFileSync(LINK_SOURCE, 'utf8'), {
      compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022 },
    });
    mkdirSync(WORK_DIR, { recursive: true });
    const file = join(WORK_DIR, 'link.mjs');
    writeFileSync(file, out.outputText);
    linkModule = await import(pathToFileURL(file).href);
  }
  const proxy = await linkModule.startLink({ target, ...linkOptions });
  const cpuBefore = process.cpuUsage();
  return {
    proxy,
    report: () => {
      const cpu = process.cpuUsage(cpuBefore);
      return { ...proxy.stats, cpuSeconds: (cpu.user + cpu.system) / 1e6 };
    },
  };
}

/** bench/s3-baseline.mjs: the same bytes with nothing but the SDK. */
function s3BaselineCase(id, label, runs) {
  return {
    id,
    label,
    runs,
    perProcessRss: true,
    async run(corpus, dir, { s3, round }) {
      const prefix = `bench-${process.pid}-${id}-${round}`;
      const cpuBefore = machineCpu();
      const started = performance.now();
      const proc = startTimed(dir, 'sdk', process.execPath, [S3_BASELINE, corpus.path, s3.endpoint, s3.bucket, prefix, '8', '16'], {
        stdout: 'pipe',
        env: s3.env,
      });
      let stdout = '';
      proc.child.stdout.setEncoding('utf8').on('data', (text) => {
        stdout += text;
      });
      await waitAll([proc], timeoutFor(corpus));
      const seconds = (proc.endedAt - started) / 1000;
      const machine = machineCpuSince(cpuBefore);
      const report = JSON.parse(stdout.trim().split('\n').at(-1) ?? '{}');
      if (report.rawBytes !== corpus.bytes) throw new BenchError(`${label} moved ${report.rawBytes} bytes, the corpus has ${corpus.bytes}`);
      return { seconds, machine, processes: { sdk: { ...readTimeFile(proc), exitSeconds: seconds } } };
    },
  };
}

/** A throwaway radosgw on 127.0.0.1 (test/servers/ceph-up.sh) and a bucket in it. */
async function startS3() {
  // Beside the run's work directory, not in it: that one is removed when the cases are done.
  const dir = join(WORK_ROOT, `ceph-${process.pid}`);
  mkdirSync(WORK_ROOT, { recursive: true });
  process.stderr.write('bench: starting Ceph radosgw on 127.0.0.1 (test/servers/ceph-up.sh)\n');
  const up = spawnSync('bash', [CEPH_UP, dir], { encoding: 'utf8', stdio: ['ignore', 'pipe', 2] });
  if (up.status !== 0) throw new BenchError(`test/servers/ceph-up.sh failed (exit ${up.status ?? up.signal})`);
  cephDir = dir;
  const vars = Object.fromEntries(
    up.stdout
      .trim()
      .split('\n')
      .map((line) => line.split(/=(.*)/s).slice(0, 2)),
  );
  const endpoint = vars.BUCKETPIPE_TEST_S3_ENDPOINT;
  // The SDK's ten-line NodeVersionSupportWarning on Node 20 (here and in s3-baseline.mjs) would
  // break the bench's report; the CLI silences it too.
  process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
  const env = {
    ...process.env,
    AWS_ACCESS_KEY_ID: vars.BUCKETPIPE_TEST_S3_ACCESS_KEY_ID,
    AWS_SECRET_ACCESS_KEY: vars.BUCKETPIPE_TEST_S3_SECRET_ACCESS_KEY,
    AWS_REGION: 'us-east-1',
    AWS_EC2_METADATA_DISABLED: 'true',
  };
  const { S3Client, CreateBucketCommand, ListObjectsV2Command, DeleteObjectsCommand } = await import('@aws-sdk/client-s3');
  const client = new S3Client({
    endpoint,
    region: 'us-east-1',
    forcePathStyle: true,
    credentials: { accessKeyId: env.AWS_ACCESS_KEY_ID, secretAccessKey: env.AWS_SECRET_ACCESS_KEY },
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
  });
  const bucket = 'bench';
  await client.send(new CreateBucketCommand({ Bucket: bucket }));
  /** The memstore OSD holds everything in RAM: each run's objects are deleted after it. */
  const deletePrefix = async (prefix) => {
    for (;;) {
      const page = await client.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: `${prefix}/` }));
      const keys = (page.Contents ?? []).map(({ Key }) => ({ Key }));
      if (keys.length === 0) return;
      await client.send(new DeleteObjectsCommand({ Bucket: bucket, Delete: { Objects: keys, Quiet: true } }));
    }
  };
  return {
    endpoint,
    bucket,
    env,
    deletePrefix,
    stop: () => {
      client.destroy();
      stopS3();
    },
  };
}

let cephDir;

function stopS3() {
  if (cephDir === undefined) return;
  spawnSync('bash', [CEPH_DOWN, cephDir], { stdio: 'ignore' });
  cephDir = undefined;
  removeWorkDir();
}

/** The pipeline run by bash with pipefail; every stage is wrapped in GNU time for its RSS and CPU. */
function pipelineCase(id, label, stages, runs) {
  for (const word of stages.flat()) if (!/^[\w.-]+$/.test(word)) throw new Error(`bug: unquoted pipeline word ${word}`);
  return {
    id,
    label,
    runs,
    async run(corpus, dir) {
      const timeFiles = stages.map((_, i) => join(dir, `stage-${i}.time`));
      // $1: the corpus, $2..: one GNU time output file per stage.
      const script = stages
        .map((argv, i) => `${TIME} -f '%M %U %S' -o "\${${i + 2}}" ${argv.join(' ')}${i === 0 ? ' < "$1"' : ''}`)
        .join(' | ');
      const cpuBefore = machineCpu();
      const started = performance.now();
      const proc = startProcess('bash', ['-o', 'pipefail', '-c', `${script} > /dev/null`, 'bench', corpus.path, ...timeFiles], {
        label,
      });
      await waitAll([proc], timeoutFor(corpus));
      const seconds = (proc.endedAt - started) / 1000;
      const machine = machineCpuSince(cpuBefore);
      const processes = Object.fromEntries(stages.map((argv, i) => [`${i + 1}:${argv[0]}`, parseTimeFile(timeFiles[i], label)]));
      return { seconds, machine, processes };
    },
  };
}

/**
 * An untimed, independent check: one more receive of the stream, through a pipe into this
 * process, hashed here and compared with the corpus.
 */
async function verifyReceivedBytes(stream, corpus, receiveOptions = []) {
  const proc = startProcess(process.execPath, [CLI, 'receive', stream, '-q', ...receiveOptions], {
    stdout: 'pipe',
    label: 'verifying receive',
  });
  const [{ sha256 }] = await Promise.all([hashesOfStream(proc.child.stdout), waitAll([proc], timeoutFor(corpus))]);
  if (sha256 !== corpus.sha256) {
    throw new BenchError(`received output does not match the corpus: sha256 ${sha256}, corpus ${corpus.sha256}`);
  }
}

/** An encrypted stream's digest is keyed (docs/FORMAT.md §4.4): then both sides must report the sender's. */
function checkSummary(proc, corpus, digest = corpus.digest) {
  const summary = summaryOf(proc);
  if (summary.rawBytes !== corpus.bytes || summary.digest !== digest) {
    throw new BenchError(
      `${proc.label} reported ${summary.rawBytes} bytes, digest ${summary.digest}; the corpus has ${corpus.bytes} bytes, digest ${digest}`,
    );
  }
}

/** A fresh random key for one run, readable by its owner only. */
function writeKeyFile(dir) {
  const path = join(dir, 'bench.key');
  writeFileSync(path, randomBytes(32).toString('hex'), { mode: 0o600 });
  return path;
}

/** The summary event bucketpipe logs on stderr when it is done (a pipe here: the JSON log format, one object per line). */
function summaryOf(proc) {
  const summary = proc.stderr
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l))
    .findLast((event) => event.event === 'summary');
  if (!summary) throw new BenchError(`${proc.label} logged no summary event; its stderr:\n${proc.stderr}`);
  return summary;
}

/** The main thread's busy time the CLI reports on exit when MAIN_THREAD_ENV asks for it. */
function mainThreadOf(proc) {
  const report = proc.stderr
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l))
    .findLast((event) => event.event === 'main-thread');
  if (!report)
    throw new BenchError(`${proc.label} reported no main-thread busy time (BUCKETPIPE_REPORT_MAIN_THREAD); its stderr:\n${proc.stderr}`);
  return report;
}

// ---------------------------------------------------------------------------------------------
// Processes

/** Generous: a stuck pipeline must not hang the bench forever, a slow one must not be cut. */
function timeoutFor(corpus) {
  return 120_000 + (corpus.bytes / (1 * MB)) * 1000;
}

/** Runs a command under GNU time (peak RSS and CPU of exactly that process, not of a shell). */
function startTimed(dir, label, command, args, stdio) {
  const timeFile = join(dir, `${label}.time`);
  const proc = startProcess(TIME, ['-f', '%M %U %S', '-o', timeFile, command, ...args], { ...stdio, label });
  proc.timeFile = timeFile;
  return proc;
}

/**
 * Starts a command in a process group of its own, so that it and everything it started can be
 * killed together. stderr is collected (bucketpipe's summary line, error messages).
 */
function startProcess(command, args, { stdin = 'ignore', stdout = 'ignore', label, env }) {
  const child = spawn(command, args, { stdio: [stdin, stdout, 'pipe'], detached: true, ...(env ? { env } : {}) });
  const proc = { child, label: label ?? command, stderr: '', endedAt: undefined, exit: undefined };
  live.add(proc);
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (text) => {
    proc.stderr += text;
  });
  proc.exit = new Promise((resolvePromise) => {
    child.once('error', (error) => resolvePromise({ code: null, signal: null, error }));
    child.once('close', (code, signal) => resolvePromise({ code, signal }));
  }).then((result) => {
    proc.endedAt ??= performance.now();
    live.delete(proc);
    return result;
  });
  // The wall clock stops when the process exits, not when its stderr pipe is drained.
  child.once('exit', () => {
    proc.endedAt ??= performance.now();
  });
  return proc;
}

/** Waits for all; the first failure (or the timeout) kills the others and throws. */
async function waitAll(procs, timeoutMs = 600_000) {
  let timer;
  const timedOut = new Promise((_, reject) => {
    timer = setTimeout(
      () => reject(new BenchError(`${procs.map((p) => p.label).join(' + ')}: no result after ${timeoutMs / 1000} s`)),
      timeoutMs,
    );
  });
  const failed = procs.map((proc) =>
    proc.exit.then(({ code, signal, error }) => {
      if (code === 0) return;
      const how = error
        ? error.message
        : code === null
          ? `was killed by ${signal}`
          : `exited with status ${code}${code > 128 ? ` (killed by signal ${code - 128}?)` : ''}`;
      throw new BenchError(`${proc.label} ${how}${proc.stderr ? `; its stderr:\n${proc.stderr.trimEnd()}` : ''}`);
    }),
  );
  try {
    await Promise.race([Promise.all(failed), timedOut]);
  } catch (error) {
    for (const proc of procs) killGroup(proc);
    await Promise.allSettled(procs.map((p) => p.exit));
    throw error;
  } finally {
    clearTimeout(timer);
  }
}

function killGroup(proc) {
  if (proc.child.pid === undefined || proc.child.exitCode !== null || proc.child.signalCode !== null) return;
  try {
    process.kill(-proc.child.pid, 'SIGKILL');
  } catch {
    // already gone
  }
}

function killAll() {
  for (const proc of live) killGroup(proc);
}

function readTimeFile(proc) {
  return parseTimeFile(proc.timeFile, proc.label);
}

/** GNU time -f '%M %U %S': peak RSS in KiB, user and system CPU seconds (last line; earlier ones may be notes). */
function parseTimeFile(file, label) {
  const lines = readFileSync(file, 'utf8').trim().split('\n');
  const [rssKiB, user, system] = (lines.at(-1) ?? '').split(' ').map(Number);
  if (![rssKiB, user, system].every(Number.isFinite)) throw new BenchError(`${label}: cannot read GNU time output ${file}`);
  return { rssMiB: rssKiB / 1024, cpuSeconds: user + system, userSeconds: user, systemSeconds: system };
}

/**
 * Busy and stolen CPU seconds of the whole machine (/proc/stat, in USER_HZ = 1/100 s). Compared
 * with what our own processes used, it shows how much else ran during a run: on 2 cores, anything
 * else running moves the numbers.
 */
function machineCpu() {
  const fields = readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number);
  const [user, nice, system, , , irq, softirq, steal] = fields;
  return { busy: (user + nice + system + irq + softirq) / 100, steal: (steal ?? 0) / 100 };
}

function machineCpuSince(before) {
  const now = machineCpu();
  return { busy: now.busy - before.busy, steal: now.steal - before.steal };
}

function freshWorkDir(name) {
  const dir = join(WORK_DIR, name);
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  return dir;
}

function removeWorkDir() {
  rmSync(WORK_DIR, { recursive: true, force: true });
  try {
    rmdirSync(WORK_ROOT); // only when no other bench is using it
  } catch {
    // not empty or already gone
  }
}

/** Two benches at once would each measure the other: say so (their work dirs are apart). */
function warnAboutOtherBenches() {
  let others = [];
  try {
    others = readdirSync(WORK_ROOT)
      .map((name) => Number(/^run-(\d+)$/.exec(name)?.[1]))
      .filter((pid) => Number.isInteger(pid) && pid !== process.pid && isAlive(pid));
  } catch {
    return;
  }
  if (others.length > 0) {
    process.stderr.write(
      `bench: warning: another bench is running (pid ${others.join(', ')}): both will measure less than the machine can do\n`,
    );
  }
}

function isAlive(pid) {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

// ---------------------------------------------------------------------------------------------
// Report

function printReport({ options, corpus, slice, machine, results }) {
  const out = [];
  const statName = options.stat === 'best' ? 'best' : 'median';
  const corpusName = corpus.path.startsWith(ROOT) ? corpus.path.slice(ROOT.length + 1) : corpus.path;
  out.push('bucketpipe throughput benchmark');
  out.push(`machine: ${machine.cores} cores (${machine.model}), ${machine.memoryGiB.toFixed(0)} GiB RAM, Linux ${machine.kernel}`);
  out.push(`         node ${machine.node}, zstd ${machine.zstd}, work dir on ${machine.fsType}, code ${machine.code}`);
  out.push(`         load average (1 min): ${machine.loadBefore.toFixed(2)} before the runs, ${loadavg()[0].toFixed(2)} after`);
  out.push(
    `corpus:  ${corpusName}: ${corpus.bytes} bytes (${(corpus.bytes / MiB).toFixed(0)} MiB), ` +
      `zstd -1 ratio ${corpus.zstdRatio.toFixed(2)}x, sha256 ${corpus.sha256.slice(0, 16)}…`,
  );
  out.push(`MB/s:    corpus bytes / 10^6 / wall seconds from start until every process of the case exited;`);
  out.push(`         the ${statName} of the runs, [min–max] over all runs`);
  out.push(`CPU s:   user + sys of the case's processes in that run; others: CPU s used meanwhile by every`);
  out.push(`         other process on the machine (this script included): a large value means a disturbed run`);
  if (slice) {
    out.push(
      `(f):     ${slice.name === 'the whole corpus' ? 'the whole corpus' : `${slice.name} (${slice.bytes} bytes)`}, ` +
        `zstd -1 ratio ${slice.zstdRatio.toFixed(2)}x; MB/s of raw bytes`,
    );
  }
  out.push('peak RSS: per process (a) or summed over the stages (b, c); the highest over the runs');
  out.push('');

  const rows = results.map((r) => summarize(r, r.case.id.startsWith('f') ? slice : corpus, options.stat));
  const table = [['case', 'runs', `MB/s (${statName})`, '[min–max]', 'wall s', 'CPU s', 'others', 'peak RSS MiB']];
  for (const row of rows) {
    table.push([
      row.label,
      String(row.runs),
      row.MBps.toFixed(1),
      `[${row.minMBps.toFixed(1)}–${row.maxMBps.toFixed(1)}]`,
      row.seconds.toFixed(2),
      row.cpuSeconds.toFixed(1),
      row.othersCpu.toFixed(1),
      row.rss,
    ]);
  }
  out.push(...formatTable(table));
  out.push('');
  out.push(`details (the ${statName} run of each case):`);
  for (const row of rows) out.push(...row.details.map((line) => `  ${line}`));
  out.push('');
  out.push(...targetLines(rows, corpus));
  process.stdout.write(`${out.join('\n')}\n`);
}

function summarize(result, corpus, stat) {
  const speeds = result.runs.map((run) => corpus.bytes / MB / run.seconds);
  const chosen = pickRun(result.runs, speeds, stat);
  const names = Object.keys(chosen.processes);
  const peakRss = (name) => Math.max(...result.runs.map((run) => run.processes[name].rssMiB));
  const rss =
    result.case.id.startsWith('a') || result.case.perProcessRss
      ? names.map((name) => `${name} ${peakRss(name).toFixed(0)}`).join(', ')
      : `total ${names.reduce((sum, name) => sum + peakRss(name), 0).toFixed(0)}`;
  const cpuSeconds = names.reduce((sum, name) => sum + chosen.processes[name].cpuSeconds, 0);
  const othersCpu = Math.max(0, chosen.machine.busy - cpuSeconds);
  const width = Math.max(...names.map((name) => name.length));
  const steal = chosen.machine.steal > 0.05 ? `, ${chosen.machine.steal.toFixed(1)} s stolen by the hypervisor` : '';
  const details = [
    `${result.case.label}: ${(cpuSeconds / chosen.seconds).toFixed(2)} cores busy, others ${othersCpu.toFixed(1)} CPU s${steal}` +
      (chosen.ratio ? `, stored ratio ${chosen.ratio}x` : ''),
    ...names.map((name) => {
      const p = chosen.processes[name];
      const exited = p.exitSeconds === undefined ? '' : `, exited at ${p.exitSeconds.toFixed(2)} s`;
      const mainThread =
        p.mainThreadSeconds === undefined
          ? ''
          : `, main thread ${p.mainThreadSeconds.toFixed(2)} CPU s (event loop busy ${p.mainThreadBusySeconds.toFixed(2)} s of wall time` +
            (p.mainThreadStart ? `; ${p.mainThreadStart.cpuSeconds.toFixed(2)} CPU s of it before the first chunk had moved)` : ')');
      return `    ${name.padEnd(width)}  ${p.userSeconds.toFixed(1)} user + ${p.systemSeconds.toFixed(1)} sys CPU s, peak RSS ${p.rssMiB.toFixed(0)} MiB${exited}${mainThread}`;
    }),
    ...(chosen.requests ? [`    requests: ${describeRequests(chosen.requests)}`] : []),
    ...(chosen.link ? [`    link: ${describeLink(chosen.link, chosen.seconds)}`] : []),
  ];
  return {
    id: result.case.id,
    label: result.case.label,
    runs: result.runs.length,
    MBps: stat === 'best' ? Math.max(...speeds) : median(speeds),
    minMBps: Math.min(...speeds),
    maxMBps: Math.max(...speeds),
    seconds: chosen.seconds,
    cpuSeconds,
    othersCpu,
    rss,
    details,
    requests: chosen.requests,
    link: chosen.link,
    busyCores: cpuSeconds / chosen.seconds,
    machineCores: chosen.machine.busy / chosen.seconds,
    processes: chosen.processes,
    peakRssMiB: Object.fromEntries(names.map((name) => [name, peakRss(name)])),
  };
}

function describeLink(l, seconds) {
  return (
    `${l.connections} connections, at most ${l.maxOpenConnections} open at once; ` +
    `${(l.bytesUp / MB).toFixed(0)} MB up, ${(l.bytesDown / MB).toFixed(0)} MB down ` +
    `(${(l.bytesUp / MB / seconds).toFixed(1)} and ${(l.bytesDown / MB / seconds).toFixed(1)} MB/s); proxy ${l.cpuSeconds.toFixed(1)} CPU s`
  );
}

function describeRequests(r) {
  const list = (counts) =>
    Object.entries(counts)
      .filter(([, n]) => n > 0)
      .map(([op, n]) => `${n} ${op.toUpperCase()}`)
      .join(' + ');
  return (
    `${r.chunks} chunks; send ${list(r.sendRequests)} = ${r.sendPutsPerChunk.toFixed(2)} PUT/chunk; ` +
    `receive ${list(r.receiveRequests)} = ${r.receiveGetsPerChunk.toFixed(2)} GET/chunk`
  );
}

/** The run whose speed is the reported one (for an even count, the faster of the middle two). */
function pickRun(runs, speeds, stat) {
  const order = speeds.map((speed, i) => [speed, i]).sort((x, y) => x[0] - y[0]);
  const at = stat === 'best' ? order.length - 1 : Math.floor(order.length / 2);
  return runs[order[at][1]];
}

function median(values) {
  const sorted = [...values].sort((x, y) => x - y);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

function targetLines(rows, corpus) {
  const seed = rows.find((r) => r.id === 'b');
  const ceiling = rows.find((r) => r.id === 'c');
  const lines = ['targets (from the issue): (a) ≥ 10× (b) and (a) ≥ 60% of (c)'];
  const table = [];
  for (const row of rows.filter((r) => r.id.startsWith('a'))) {
    table.push(targetRow(row, seed, 10, `≥ 10× (b)`, (ratio) => `${ratio.toFixed(1)}×`));
    table.push(targetRow(row, ceiling, 0.6, `≥ 60% of (c)`, (ratio) => `${(ratio * 100).toFixed(0)}%`));
  }
  const viaS3 = rows.find((r) => r.id === 'd');
  const sdk = rows.find((r) => r.id === 'e');
  const s3Lines = [];
  if (viaS3) {
    const r = viaS3.requests;
    s3Lines.push('S3 (issue 3): sender about 1 PUT per chunk plus a manifest update every few seconds; receiver ≤ 1.2 GET per chunk');
    const rows3 = [
      [viaS3.label, 'PUT per chunk', r.sendPutsPerChunk.toFixed(2), r.sendPutsPerChunk <= 1.2 ? 'PASS' : 'FAIL'],
      [viaS3.label, 'GET per chunk', r.receiveGetsPerChunk.toFixed(2), r.receiveGetsPerChunk <= 1.2 ? 'PASS' : 'FAIL'],
    ];
    if (sdk) rows3.push([viaS3.label, 'vs (e), plain SDK', `${((viaS3.MBps / sdk.MBps) * 100).toFixed(0)}% of its MB/s`, '']);
    s3Lines.push(...formatTable(rows3).map((line) => `  ${line}`));
  }
  const linkLines = linkTargetLines(rows);
  if (table.length === 0) return [...s3Lines, ...linkLines];
  return [...lines, ...formatTable(table).map((line) => `  ${line}`), ...costLines(rows, corpus), ...s3Lines, ...linkLines];
}

/** (f): bucketpipe with default options against the single stream, and how it scales with --concurrency. */
function linkTargetLines(rows) {
  const single = rows.find((r) => r.id === 'f-single');
  const linkRows = rows.filter((r) => r.id.startsWith('f-') && r.id !== 'f-single');
  if (!single || linkRows.length === 0) return [];
  const lines = ['', '(f) through the link (issue 10): bucketpipe with default options ≥ 5× one TCP stream'];
  const table = [['', 'MB/s', '× one stream', 'cores: case', 'all', 'connections open (max)', 'link used up / down', '']];
  for (const row of [single, ...linkRows]) {
    const ratio = row.MBps / single.MBps;
    const verdict = row.id === 'f-default' ? (ratio >= 5 ? 'PASS' : 'FAIL') : '';
    table.push([
      row.label.replace(/^\(f\) /, '').replace(/, link .*$/, ''),
      row.MBps.toFixed(1),
      `${ratio.toFixed(1)}×`,
      row.busyCores.toFixed(2),
      row.machineCores.toFixed(2),
      String(row.link?.maxOpenConnections ?? ''),
      row.link ? `${(row.link.bytesUp / MB / row.seconds).toFixed(1)} / ${(row.link.bytesDown / MB / row.seconds).toFixed(1)} MB/s` : '',
      verdict,
    ]);
  }
  lines.push(...formatTable(table).map((line) => `  ${line}`));
  lines.push(
    `  cores: the case's processes, and the whole machine (radosgw, the proxy, anyone else) during the run; all near ${availableParallelism()}: CPU-bound, not link-bound`,
  );
  return lines;
}

/**
 * Issue 10's per-byte costs, each process of (a) against the zstd stage of (c) that does the same
 * work on the same bytes in the same bench: CPU seconds (user + sys) per GB of raw input, the main
 * thread's CPU seconds per GB once the stream is moving (afterStart), and peak RSS against the
 * default --buffer + 100 MiB.
 */
function costLines(rows, corpus) {
  const ceiling = rows.find((r) => r.id === 'c');
  const gigabytes = corpus.bytes / GB;
  const perGB = (seconds) => `${(seconds / gigabytes).toFixed(2)} s/GB`;
  const verdict = (ok) => (ok ? 'PASS' : 'FAIL');
  const zstdCpu = ceiling && { send: ceiling.processes['1:zstd'].cpuSeconds, receive: ceiling.processes['2:zstd'].cpuSeconds };
  const table = [];
  for (const row of rows.filter((r) => r.id === 'a' || r.id === 'a-nofsync')) {
    for (const [side, factor, tool] of [
      ['send', 1.35, 'zstd -1 -T0'],
      ['receive', 2, 'zstd -d'],
    ]) {
      const p = row.processes[side];
      const label = `${row.label}: ${side}`;
      if (zstdCpu) {
        const ratio = p.cpuSeconds / zstdCpu[side];
        table.push([
          label,
          `CPU ≤ ${factor}× ${tool}`,
          `${perGB(p.cpuSeconds)} vs ${perGB(zstdCpu[side])} (${ratio.toFixed(2)}×)`,
          verdict(ratio <= factor),
        ]);
        const start = p.mainThreadStart;
        if (start) {
          const moving = (p.cpuSeconds - start.processCpuSeconds) / ((corpus.bytes - start.rawBytes) / GB);
          const zstdPerGB = zstdCpu[side] / gigabytes;
          table.push([
            label,
            '  the same, once moving',
            `${moving.toFixed(2)} s/GB (${(moving / zstdPerGB).toFixed(2)}×; start-up ${start.processCpuSeconds.toFixed(2)} s)`,
            '',
          ]);
        }
      } else {
        table.push([label, 'CPU per GB', `${perGB(p.cpuSeconds)} (run case c for zstd's own)`, '']);
      }
      const { seconds, bytes } = afterStart(p, corpus);
      const mainPerGB = seconds / (bytes / GB);
      table.push([
        label,
        'main thread CPU ≤ 0.3 s/GB',
        `${mainPerGB.toFixed(2)} s/GB after start-up (${perGB(p.mainThreadSeconds)} with its ${(p.mainThreadSeconds - seconds).toFixed(2)} s)`,
        verdict(mainPerGB <= 0.3),
      ]);
      const limit = DEFAULT_BUFFER_MiB + 100;
      table.push([label, `peak RSS ≤ ${limit} MiB`, `${row.peakRssMiB[side].toFixed(0)} MiB`, verdict(row.peakRssMiB[side] <= limit)]);
    }
  }
  if (table.length === 0) return [];
  return [
    'per byte (issue 10): CPU = user + sys per GB (10^9 bytes) of raw input, against the same stage of (c) in this bench',
    ...formatTable(table).map((line) => `  ${line}`),
  ];
}

/**
 * The main thread's CPU seconds from the moment the stream's first bytes had moved to the end, and
 * the bytes that moved meanwhile: its cost per byte, without the start-up (loading the code, the
 * store, the codec threads), which does not grow with the stream and caps no throughput. The CLI
 * notes that moment (packages/cli/src/main-thread-report.ts).
 */
function afterStart(p, corpus) {
  const start = p.mainThreadStart;
  if (!start) throw new BenchError('the CLI reported no stream start with its main-thread use (BUCKETPIPE_REPORT_MAIN_THREAD)');
  return { seconds: p.mainThreadSeconds - start.cpuSeconds, bytes: corpus.bytes - start.rawBytes };
}

function targetRow(row, reference, factor, goal, describe) {
  if (!reference) return [row.label, goal, 'n/a (case not run)', ''];
  const needed = reference.MBps * factor;
  const verdict = row.MBps >= needed ? 'PASS' : 'FAIL';
  return [row.label, goal, `needs ${needed.toFixed(1)} MB/s, has ${row.MBps.toFixed(1)} (${describe(row.MBps / reference.MBps)})`, verdict];
}

function formatTable(rows) {
  const widths = rows[0].map((_, col) => Math.max(...rows.map((row) => row[col].length)));
  return rows.map((row) =>
    row
      .map((cell, col) => (col === 0 || col === row.length - 1 ? cell.padEnd(widths[col]) : cell.padStart(widths[col])))
      .join('  ')
      .trimEnd(),
  );
}
