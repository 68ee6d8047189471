// Soak: send and receive through S3 (a throwaway Ceph radosgw) behind the fault-injecting proxy,
// with random faults and the sender and/or receiver killed (SIGKILL) at random moments and started
// again (`send --takeover --stale-after 2s`, `receive --output F`); every run's output is checked
// byte for byte. Not part of CI: `npm run soak -- --runs 5 --seed 7 [--size 1GiB] [--chunk-size 8MiB]`.
//
// The proxy is test/servers/fault-proxy.ts, the one the fault tests use: it imports nothing but
// node:*, so this script transpiles it in memory with the repository's TypeScript (type stripping
// only, no build step, no copy to keep in sync) and imports the result.
import { spawn, spawnSync } from 'node:child_process';
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { closeSync, createReadStream, existsSync, mkdirSync, openSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { seeded } from './replicate-harness.mjs';

// `npm run soak -- --replicate …`: the replication daemons' soak, a script of its own.
if (process.argv.includes('--replicate')) {
  await import('./soak-replicate.mjs');
  await new Promise(() => {}); // it exits the process itself
}

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const CLI = join(ROOT, 'packages/cli/dist/bin.js');
const MiB = 1024 * 1024;

const { values } = parseArgs({
  options: {
    runs: { type: 'string', default: '3' },
    seed: { type: 'string', default: '1' },
    size: { type: 'string' },
    'chunk-size': { type: 'string', default: '8MiB' },
    'fault-rate': { type: 'string', default: '0.03' },
    encrypt: { type: 'boolean' },
    help: { type: 'boolean', short: 'h' },
  },
});
if (values.help) {
  process.stdout.write(
    'usage: npm run soak -- [--runs N (3)] [--seed S (1)] [--size SIZE (1GiB; default corpus bench/.corpus/pgdata.tar when present)]\n' +
      '                       [--chunk-size SIZE (8MiB)] [--fault-rate P (0.03: probability of each fault kind per request)]\n' +
      '                       [--encrypt (both sides with --encryption-key-file, a fresh key)]\n',
  );
  process.exit(0);
}
const parseSize = (text) => {
  const m = /^(\d+(?:\.\d+)?)\s*(B|KiB|MiB|GiB)?$/i.exec(text);
  if (!m) throw new Error(`not a size: ${text}`);
  return Math.round(Number(m[1]) * { b: 1, kib: 1024, mib: MiB, gib: 1024 * MiB }[(m[2] ?? 'b').toLowerCase()]);
};
const runs = Number(values.runs);
const seed = Number(values.seed);
const faultRate = Number(values['fault-rate']);
const chunkSize = parseSize(values['chunk-size']);
if (!existsSync(CLI)) throw new Error(`${CLI} is missing: run \`npx turbo run build\` (npm run soak does)`);

const random = seeded(seed);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const log = (text) => process.stderr.write(`soak: ${text}\n`);

const work = join(tmpdir(), `bucketpipe-soak-${process.pid}`);
mkdirSync(work, { recursive: true });
const children = new Set();
let cephDir;
let proxy;

function cleanup() {
  for (const child of children) child.kill('SIGKILL');
  proxy?.close?.().catch?.(() => {});
  if (cephDir) spawnSync('bash', [join(ROOT, 'test/servers/ceph-down.sh'), cephDir], { stdio: 'ignore' });
  cephDir = undefined;
  rmSync(work, { recursive: true, force: true });
}
process.on('SIGINT', () => {
  cleanup();
  process.exit(130);
});

async function sha256(path) {
  const hash = createHash('sha256');
  for await (const piece of createReadStream(path)) hash.update(piece);
  return hash.digest('hex');
}

async function corpus() {
  const pgdata = join(ROOT, 'bench/.corpus/pgdata.tar');
  if (values.size === undefined && existsSync(pgdata)) return pgdata;
  const bytes = parseSize(values.size ?? '1GiB');
  const path = join(work, 'corpus.bin');
  const fd = openSync(path, 'w');
  const made = spawnSync(process.execPath, [join(ROOT, 'test/fixtures/mixed-source.mjs'), String(bytes), String(seed)], {
    stdio: ['ignore', fd, 'inherit'],
  });
  closeSync(fd);
  if (made.status !== 0) throw new Error('mixed-source.mjs failed');
  return path;
}

async function loadProxy() {
  const ts = (await import('typescript')).default;
  const source = await import('node:fs/promises').then((fs) => fs.readFile(join(ROOT, 'test/servers/fault-proxy.ts'), 'utf8'));
  const out = ts.transpileModule(source, { compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022 } });
  const file = join(work, 'fault-proxy.mjs');
  writeFileSync(file, out.outputText);
  return import(pathToFileURL(file).href);
}

function startS3() {
  cephDir = join(work, 'ceph');
  log('starting Ceph radosgw on 127.0.0.1 (test/servers/ceph-up.sh)');
  const up = spawnSync('bash', [join(ROOT, 'test/servers/ceph-up.sh'), cephDir], { encoding: 'utf8', stdio: ['ignore', 'pipe', 2] });
  if (up.status !== 0) throw new Error(`ceph-up.sh failed (exit ${up.status ?? up.signal})`);
  const vars = Object.fromEntries(
    up.stdout
      .trim()
      .split('\n')
      .map((line) => line.split(/=(.*)/s).slice(0, 2)),
  );
  return {
    endpoint: vars.BUCKETPIPE_TEST_S3_ENDPOINT,
    env: {
      ...process.env,
      AWS_ACCESS_KEY_ID: vars.BUCKETPIPE_TEST_S3_ACCESS_KEY_ID,
      AWS_SECRET_ACCESS_KEY: vars.BUCKETPIPE_TEST_S3_SECRET_ACCESS_KEY,
      AWS_REGION: 'us-east-1',
      AWS_EC2_METADATA_DISABLED: 'true',
    },
  };
}

/** Starts the CLI; resolves `done` with code, signal and stderr. */
function cli(args, env, stdio = 'ignore') {
  const child = spawn(process.execPath, [CLI, ...args], { env, stdio: ['ignore', stdio, 'pipe'] });
  children.add(child);
  let stderr = '';
  child.stderr.setEncoding('utf8').on('data', (t) => {
    stderr += t;
  });
  const done = new Promise((ok) =>
    child.on('close', (code, signal) => {
      children.delete(child);
      ok({ code, signal, stderr });
    }),
  );
  return { child, done };
}

/** The CLI's log events (stderr is a pipe, so the JSON log format: one object per line). */
const eventsOf = (stderr) =>
  stderr.split('\n').flatMap((line) => {
    try {
      return line.startsWith('{') ? [JSON.parse(line)] : [];
    } catch {
      return [];
    }
  });
const summaryOf = (stderr) => eventsOf(stderr).findLast((event) => event.event === 'summary');
const lastLine = (stderr) => {
  const last = eventsOf(stderr).at(-1);
  return last ? `${last.msg}${last.code ? ` [${last.code}]` : ''}` : (stderr.trim().split('\n').at(-1) ?? '');
};

/** A fresh random key, readable by its owner only (--encrypt). */
function writeKeyFile() {
  const path = join(work, 'soak.key');
  writeFileSync(path, randomBytes(32).toString('hex'), { mode: 0o600 });
  return path;
}

async function main() {
  const input = await corpus();
  const inputBytes = statSync(input).size;
  const inputSha = await sha256(input);
  const totalChunks = Math.ceil(inputBytes / chunkSize);
  log(`corpus ${input}: ${(inputBytes / MiB).toFixed(0)} MiB, ${totalChunks} chunks of ${chunkSize / MiB} MiB`);
  const { FaultProxy } = await loadProxy();
  const s3 = startS3();
  const { S3Client, CreateBucketCommand, GetObjectCommand } = await import('@aws-sdk/client-s3');
  const client = new S3Client({
    endpoint: s3.endpoint,
    region: 'us-east-1',
    forcePathStyle: true,
    credentials: { accessKeyId: s3.env.AWS_ACCESS_KEY_ID, secretAccessKey: s3.env.AWS_SECRET_ACCESS_KEY },
  });
  const bucket = 'soak';
  await client.send(new CreateBucketCommand({ Bucket: bucket }));
  proxy = new FaultProxy({ target: s3.endpoint, flavor: 's3', seed });
  await proxy.listen();
  const keyOptions = values.encrypt ? ['--encryption-key-file', writeKeyFile()] : [];
  const viaProxy = ['--s3-endpoint', proxy.endpoint, '--s3-path-style', ...keyOptions];
  const direct = ['--s3-endpoint', s3.endpoint, '--s3-path-style'];

  const rows = [];
  for (let run = 1; run <= runs; run++) {
    const prefix = `run-${run}-${randomUUID().slice(0, 8)}`;
    const url = `s3://${bucket}/${prefix}`;
    const output = join(work, `out-${run}.bin`);
    rmSync(output, { force: true });
    // Faults: each kind fires on about `faultRate` of the requests (the proxy's PRNG, seeded).
    proxy.clear(seed + run);
    proxy
      .add({ name: 'reset-request', probability: faultRate, action: { kind: 'reset', at: 'request' } })
      .add({ name: 'reset-response', probability: faultRate, action: { kind: 'reset', at: 'response' } })
      .add({ name: 'lost-reply-500', probability: faultRate, action: { kind: 'status', status: 500, afterForward: true } })
      .add({ name: '503', probability: faultRate, action: { kind: 'status', status: 503 } })
      .add({ name: 'stall', probability: faultRate / 2, action: { kind: 'stall', afterBytes: 1000, ms: 1500 } })
      .add({ name: 'truncate', method: 'GET', path: /chunks\//, probability: faultRate, action: { kind: 'truncate', afterBytes: 65536 } });
    const logStart = proxy.log.length;

    // A kill planned past the point a side had reached when it finished is not done (the table says so).
    // Kills: 0–2 of the sender, 0–2 of the receiver (at least one), each at a random fraction of the stream.
    let senderKills = Math.floor(random() * 3);
    const receiverKills = Math.floor(random() * 3);
    if (senderKills + receiverKills === 0) senderKills = 1;
    const at = (n) => Array.from({ length: n }, () => 0.1 + random() * 0.8).sort((a, b) => a - b);
    const senderAt = at(senderKills).map((f) => Math.max(1, Math.floor(f * totalChunks)));
    const receiverAt = at(receiverKills).map((f) => Math.floor(f * inputBytes));

    const watermark = async () => {
      try {
        const got = await client.send(new GetObjectCommand({ Bucket: bucket, Key: `${prefix}/manifest.json` }));
        return JSON.parse(await got.Body.transformToString()).watermark ?? 0;
      } catch {
        return 0;
      }
    };
    const sizeOf = () => (existsSync(output) ? statSync(output).size : 0);
    const started = performance.now();
    const recoveries = [];
    const killed = { send: 0, receive: 0 };
    let unplannedRestarts = 0;

    const sendSide = async () => {
      const summaries = [];
      let attempt = 0;
      for (;;) {
        const args = ['send', url, ...viaProxy, '--chunk-size', String(chunkSize), '--manifest-interval', '250ms', '-q'];
        if (attempt > 0) args.push('--takeover', '--stale-after', '2s');
        const p = cli([...args, '--', 'cat', input], s3.env);
        attempt++;
        const killAt = senderAt[0];
        let killedAt;
        if (killAt !== undefined) {
          (async () => {
            while (!p.child.exitCode && p.child.signalCode === null) {
              const w = await watermark();
              if (w >= killAt) {
                killedAt = w;
                p.child.kill('SIGKILL');
                return;
              }
              await sleep(100);
            }
          })();
        }
        const r = await p.done;
        if (r.signal === 'SIGKILL' && killedAt !== undefined) {
          senderAt.shift();
          killed.send++;
          const killTime = performance.now();
          log(`run ${run}: sender killed at watermark ${killedAt}`);
          // Recovered: the watermark passes what it was at the kill (or the stream completes).
          const recovered = (async () => {
            while ((await watermark()) <= killedAt && killedAt < totalChunks) await sleep(100);
            recoveries.push({ side: 'send', ms: performance.now() - killTime });
          })();
          recovered.catch(() => {});
          await sleep(100);
          continue;
        }
        if (r.code === 0) {
          summaries.push(summaryOf(r.stderr));
          return summaries;
        }
        if (r.code === 4 && /BP_SENDER_LIVE/.test(r.stderr)) {
          await sleep(500); // the dead sender's heartbeat is not yet 2 s old
          continue;
        }
        unplannedRestarts++;
        log(`run ${run}: send exited ${r.code ?? r.signal}: ${lastLine(r.stderr)} — restarting with --takeover`);
        if (unplannedRestarts > 20) throw new Error('too many unplanned restarts');
      }
    };

    const receiveSide = async () => {
      for (;;) {
        const p = cli(['receive', url, ...viaProxy, '--output', output, '--receiver-id', 'soak', '--poll-interval', '250ms', '-q'], s3.env);
        const killAt = receiverAt[0];
        let killedAt;
        if (killAt !== undefined) {
          (async () => {
            while (!p.child.exitCode && p.child.signalCode === null) {
              if (sizeOf() >= killAt) {
                killedAt = sizeOf();
                p.child.kill('SIGKILL');
                return;
              }
              await sleep(50);
            }
          })();
        }
        const r = await p.done;
        if (r.signal === 'SIGKILL' && killedAt !== undefined) {
          receiverAt.shift();
          killed.receive++;
          const killTime = performance.now();
          log(`run ${run}: receiver killed at ${(killedAt / MiB).toFixed(0)} MiB`);
          const recovered = (async () => {
            // The restarted receiver cuts a partial chunk off; recovered once the file is past the kill point.
            while (sizeOf() <= killedAt && killedAt < inputBytes) await sleep(50);
            recoveries.push({ side: 'receive', ms: performance.now() - killTime });
          })();
          recovered.catch(() => {});
          continue;
        }
        if (r.code === 0) return summaryOf(r.stderr);
        unplannedRestarts++;
        log(`run ${run}: receive exited ${r.code ?? r.signal}: ${lastLine(r.stderr)} — restarting`);
        if (unplannedRestarts > 20) throw new Error('too many unplanned restarts');
        await sleep(500);
      }
    };

    const [sendSummaries, receiveSummary] = await Promise.all([sendSide(), receiveSide()]);
    const seconds = (performance.now() - started) / 1000;
    const identical = statSync(output).size === inputBytes && (await sha256(output)) === inputSha;
    const requests = proxy.log.slice(logStart);
    const chunkPuts = requests.filter((q) => q.method === 'PUT' && /\/chunks\/\d+/.test(q.path) && q.status === 200).length;
    const faults = requests.filter((q) => q.fault !== undefined).length;
    const last = sendSummaries.at(-1);
    rows.push({
      run,
      senderKills: killed.send,
      receiverKills: killed.receive,
      plannedKills: senderKills + receiverKills,
      faults,
      requests: requests.length,
      identical,
      chunks: last.chunks,
      lastSenderUploaded: last.chunksUploaded ?? last.chunks,
      chunkPuts,
      reuploaded: (chunkPuts - last.chunks) / last.chunks,
      maxRecoverMs: Math.max(0, ...recoveries.map((r) => r.ms)),
      unplannedRestarts,
      seconds,
      receiveMBps: receiveSummary?.MBps,
    });
    log(`run ${run}: ${identical ? 'identical' : 'MISMATCH'} in ${seconds.toFixed(1)} s`);
    spawnSync(process.execPath, [CLI, 'rm', url, ...direct, '--force', '-q'], { env: s3.env, stdio: 'ignore' });
    if (!identical) break;
  }
  client.destroy();

  const table = [
    '| run | kills done (send / receive) of planned | faults / requests | identical | chunks | uploaded by last sender | chunk PUTs (2xx) | re-uploaded | max recovery | restarts after a fault | time |',
    '| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |',
    ...rows.map(
      (r) =>
        `| ${r.run} | ${r.senderKills} / ${r.receiverKills} of ${r.plannedKills} | ${r.faults} / ${r.requests} | ${r.identical ? 'yes' : '**NO**'} | ${r.chunks} | ${r.lastSenderUploaded} | ${r.chunkPuts} | ${(r.reuploaded * 100).toFixed(1)}% | ${(r.maxRecoverMs / 1000).toFixed(1)} s | ${r.unplannedRestarts} | ${r.seconds.toFixed(1)} s |`,
    ),
  ];
  const killsSurvived = rows.filter((r) => r.identical).reduce((n, r) => n + r.senderKills + r.receiverKills, 0);
  process.stdout.write(
    `${table.join('\n')}\n\nkills survived: ${killsSurvived}; runs identical: ${rows.filter((r) => r.identical).length}/${runs}\n`,
  );
  return rows.length === runs && rows.every((r) => r.identical) ? 0 : 1;
}

main()
  .then((code) => {
    cleanup();
    process.exit(code);
  })
  .catch((error) => {
    process.stderr.write(`soak: ${error.stack ?? error}\n`);
    cleanup();
    process.exit(1);
  });
