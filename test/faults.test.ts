import { randomUUID } from 'node:crypto';
import { join } from 'node:path';
import { afterEach, beforeAll, describe, expect, inject, it } from 'vitest';
import {
  bucketpipe,
  createS3Bucket,
  errorLine,
  type Finished,
  fixtures,
  logText,
  MiB,
  mixedInputSuite,
  outputFile,
  run,
  s3Env,
  sha256File,
  streamDigestOfFile,
  summaryOf,
  waitFor,
} from './helpers.js';
import { type FaultProxy, type FaultRule, startFaultProxy } from './servers/fault-proxy.js';
import { GCS_TEST_BUCKET } from './servers/gcs.js';

// The real CLI (send and receive as separate processes) talking to radosgw and the GCS test server
// through a fault-injecting proxy (test/servers/fault-proxy.ts, in this process). Under each fault
// the transfer must complete byte-identical with bounded retries; with the store gone for good both
// sides must fail with one clear line within a bounded time, and the stream must be resumable.
const s3 = inject('s3');
const gcs = inject('gcs');
const bucket = `faults-${randomUUID().slice(0, 8)}`;
const env = s3Env(s3);
const SIZE = 32 * MiB;
const CHUNK = 2 * MiB;
const CHUNKS = SIZE / CHUNK;
const sendOptions = ['--chunk-size', '2MiB', '--manifest-interval', '200ms', '-q'];
const receiveOptions = ['--poll-interval', '200ms', '-q'];
/** Core's default retry policy: 8 attempts, backoff ceilings 0.2+0.4+…+12.8 s = 25.4 s at most between them. */
const GIVE_UP_MS = 60_000;

type Flavor = 's3' | 'gcs';
/** Stalls that never end: as long as the stores' timeouts (S3 120 s of socket silence). */
const slow = process.env.BUCKETPIPE_TEST_SLOW_FAULTS === '1';
interface Target {
  flavor: Flavor;
  direct: string;
  url(name: string): string;
  args(endpoint: string): string[];
  /** Request paths that write a chunk / the manifest (S3: PUT /bucket/key; GCS: multipart POST ?name=key). */
  chunkWrite: RegExp;
  manifestWrite: { method: string; path: RegExp };
}

const targets: Target[] = [
  {
    flavor: 's3',
    direct: s3.endpoint,
    url: (name) => `s3://${bucket}/${name}`,
    args: (endpoint) => ['--s3-endpoint', endpoint, '--s3-path-style'],
    chunkWrite: /\/chunks\/\d+(\?|$)/,
    manifestWrite: { method: 'PUT', path: /\/manifest\.json(\?|$)/ },
  },
  {
    flavor: 'gcs',
    direct: gcs.endpoint,
    url: (name) => `gs://${GCS_TEST_BUCKET}/${name}`,
    args: (endpoint) => ['--gcs-endpoint', endpoint],
    chunkWrite: /uploadType=multipart.*name=[^&]*chunks%2F\d+/,
    manifestWrite: { method: 'POST', path: /uploadType=multipart.*name=[^&]*manifest\.json/ },
  },
];

const suite = mixedInputSuite('faults', SIZE, 11);
let inputDigest: string;
const proxies: FaultProxy[] = [];

beforeAll(async () => {
  await createS3Bucket(s3, bucket);
  inputDigest = await streamDigestOfFile(suite.input, CHUNK);
});
afterEach(async () => {
  await Promise.all(proxies.splice(0).map((p) => p.close()));
});

async function proxyFor(target: Target, seed: number, rules: FaultRule[] = []): Promise<FaultProxy> {
  const proxy = await startFaultProxy({ target: target.direct, flavor: target.flavor, seed });
  proxies.push(proxy);
  for (const rule of rules) proxy.add(rule);
  return proxy;
}

interface Transfer {
  sent: Finished;
  received: Finished & { path: string; ms: number };
  sentMs: number;
}

/** Starts `receive` then `send` of the input through `endpoint`; resolves when both have exited. */
async function transfer(target: Target, name: string, endpoint: string, source: string[] = ['cat', suite.input], extraSend: string[] = []) {
  const url = target.url(name);
  const path = join(suite.dir, `${name}.out`);
  const out = await outputFile(path);
  const started = performance.now();
  const receiver = bucketpipe(['receive', url, ...receiveOptions, ...target.args(endpoint)], { env, stdoutFile: out.fd });
  const sender = bucketpipe(['send', url, ...sendOptions, ...extraSend, ...target.args(endpoint), '--', ...source], { env });
  const timed = (p: Promise<Finished>) => p.then((f) => ({ ...f, ms: performance.now() - started }));
  const receiverDone = timed(receiver.done).finally(() => out.close());
  const senderDone = timed(sender.done);
  return { url, path, started, sender, receiver, senderDone, receiverDone };
}

async function expectIdentical(t: Awaited<ReturnType<typeof transfer>>): Promise<Transfer> {
  const [sent, received] = await Promise.all([t.senderDone, t.receiverDone]);
  expect(sent.code, sent.stderr).toBe(0);
  expect(received.code, received.stderr).toBe(0);
  expect(summaryOf(sent.stderr)).toMatchObject({ command: 'send', state: 'complete', chunks: CHUNKS, digest: inputDigest });
  expect(summaryOf(received.stderr)).toMatchObject({ command: 'receive', rawBytes: SIZE, digest: inputDigest });
  expect(await sha256File(t.path)).toBe(suite.sha256);
  return { sent, received: { ...received, path: t.path }, sentMs: sent.ms };
}

type Counts = { put: number; get: number; head: number; list: number; delete: number };
const requestsOf = (f: Finished) => summaryOf(f.stderr).requests as Counts;
/** Faults after which the client has no answer and must retry (delay and a finite stall only slow it down). */
const failing = new Set(['reset-request', 'reset-response', 'reset-mid-body', 'status-500', 'status-503', 'lost-reply', 'truncate']);

describe.each(targets)('$flavor through the fault proxy', (target) => {
  it('completes byte-identical with every fault kind injected at random (seeded, ~10% of requests)', async () => {
    const p = 0.0125; // 9 rules (7 for GCS): ~10% of requests
    const proxy = await proxyFor(target, 20240611, [
      { name: 'reset-request', probability: p, action: { kind: 'reset', at: 'request' } },
      { name: 'reset-response', probability: p, action: { kind: 'reset', at: 'response' } },
      { name: 'reset-mid-body', probability: p, action: { kind: 'reset', at: 'response', afterBytes: 300 } },
      { name: 'status-500', probability: p, action: { kind: 'status', status: 500 } },
      { name: 'status-503', probability: p, action: { kind: 'status', status: 503 } },
      { name: 'lost-reply', probability: p, action: { kind: 'status', status: 500, afterForward: true } },
      { name: 'delay', probability: p, action: { kind: 'delay', ms: 400 } },
      { name: 'stall', probability: p, action: { kind: 'stall', afterBytes: 1000, ms: 1500 } },
      { name: 'truncate', probability: p, action: { kind: 'truncate', afterBytes: 1000 } },
    ]);
    const t = await transfer(target, 'random', proxy.endpoint);
    const { sent, received } = await expectIdentical(t);
    const fired = proxy.fired();
    const failed = proxy.log.filter((r) => r.fault !== undefined && failing.has(r.fault));
    report(`${target.flavor} random`, { fired, proxied: proxy.log.length, sent: requestsOf(sent), received: requestsOf(received) });
    expect(failed.length).toBeGreaterThanOrEqual(3);
    // Every chunk upload that failed was retried, and the summary counts the retries.
    const failedChunkPuts = failed.filter((r) => r.method !== 'GET' && target.chunkWrite.test(r.path)).length;
    expect(requestsOf(sent).put).toBeGreaterThanOrEqual(CHUNKS + failedChunkPuts);
    // Bounded: no retry storm (a fault-free run makes ~30 requests per side).
    expect(proxy.log.length).toBeLessThan(400);
  });

  it('takes a lost reply to a manifest write (create-only and compare-and-swap) for what it is, not another sender', async () => {
    const { method, path } = target.manifestWrite;
    const proxy = await proxyFor(target, 1, [
      { name: 'lost-reply', method, path, nth: [1, 3], action: { kind: 'status', status: 500, afterForward: true } },
      { name: 'reset-response', method, path, nth: [5], action: { kind: 'reset', at: 'response' } },
    ]);
    // A paced source (16 MiB/s): about 2 s, so that there are ~10 manifest writes to lose replies to.
    const paced = [process.execPath, join(fixtures, 'paced-cat.mjs'), suite.input, String(16 * MiB)];
    const t = await transfer(target, 'lost-manifest', proxy.endpoint, paced);
    const { sent } = await expectIdentical(t);
    expect(proxy.fired()).toEqual({ 'lost-reply': 2, 'reset-response': 1 });
    expect(sent.stderr).not.toMatch(/BP_STREAM_EXISTS|BP_MANIFEST_RACE|another sender/);
  });

  it('retries a download whose body stalls for 3 s', async () => {
    const proxy = await proxyFor(target, 1, [
      { name: 'stall', method: 'GET', path: /chunks/, nth: [2], action: { kind: 'stall', afterBytes: 64 * 1024, ms: 3000 } },
    ]);
    const t = await transfer(target, 'stall', proxy.endpoint);
    await expectIdentical(t);
    expect(proxy.fired()).toEqual({ stall: 1 });
  });

  it('retries downloads truncated mid-body', async () => {
    const proxy = await proxyFor(target, 1, [
      { name: 'truncate', method: 'GET', path: /chunks/, nth: [4, 5, 6], action: { kind: 'truncate', afterBytes: 64 * 1024 } },
    ]);
    const t = await transfer(target, 'truncate', proxy.endpoint);
    const { received } = await expectIdentical(t);
    expect(proxy.fired()).toEqual({ truncate: 3 });
    expect(requestsOf(received).get).toBeGreaterThanOrEqual(CHUNKS + 3);
  });

  it.skipIf(!slow)(
    'times out a download whose body stalls forever, and retries it',
    async () => {
      const proxy = await proxyFor(target, 1, [
        { name: 'stall', method: 'GET', path: /chunks/, nth: [2], action: { kind: 'stall', afterBytes: 64 * 1024, ms: 'forever' } },
      ]);
      const t = await transfer(target, 'stall-forever', proxy.endpoint);
      const { received } = await expectIdentical(t);
      report(`${target.flavor} stall forever`, { receiveMs: Math.round(received.ms), received: requestsOf(received) });
      expect(proxy.fired()).toEqual({ stall: 1 });
    },
    300_000,
  );

  it('fails with one clear line within a bounded time when the store is gone for good, and resumes with --takeover', async () => {
    const proxy = await proxyFor(target, 1);
    // A paced source (8 MiB/s), so that the store goes away mid-stream.
    const paced = [process.execPath, join(fixtures, 'paced-cat.mjs'), suite.input, String(8 * MiB)];
    const t = await transfer(target, 'gone', proxy.endpoint, paced);
    const directArgs = target.args(target.direct);
    await waitFor(
      async () => {
        const inspected = await run(['inspect', t.url, '--json', ...directArgs], { env });
        if (inspected.code !== 0) return undefined;
        return (JSON.parse(inspected.stdout) as { manifest: { watermark: number } }).manifest.watermark >= 4 ? true : undefined;
      },
      30_000,
      'the sender to store 4 chunks',
    );
    // S3: the server stops answering (connection refused); GCS: every request answers 503.
    const goneAt = performance.now();
    if (target.flavor === 's3') await proxy.down();
    else proxy.add({ name: 'gone', action: { kind: 'status', status: 503 } });
    const [sent, received] = await Promise.all([t.senderDone, t.receiverDone]);
    /** From the store going away to the process's exit. */
    const failedAfter = (f: { ms: number }) => Math.round(f.ms - (goneAt - t.started));
    report(`${target.flavor} gone`, {
      sendExit: sent.code,
      receiveExit: received.code,
      sendFailsAfterMs: failedAfter(sent),
      receiveFailsAfterMs: failedAfter(received),
      sendLine: errorLine(sent.stderr),
      receiveLine: errorLine(received.stderr),
    });
    for (const side of [sent, received]) {
      expect(side.code, side.stderr).toBe(3);
      expect(logText(side.stderr).match(/^bucketpipe: error:/gm)?.length, side.stderr).toBe(1);
      expect(errorLine(side.stderr)).toMatch(target.flavor === 's3' ? /connection refused|ECONNREFUSED/ : /HTTP 503/);
      expect(failedAfter(side)).toBeLessThan(GIVE_UP_MS);
    }

    // The store is back: a takeover finishes the stream, a new receiver gets all of it.
    if (target.flavor === 's3') await proxy.listen();
    else proxy.clear();
    const resumed = await transfer(target, 'gone', proxy.endpoint, ['cat', suite.input], ['--takeover', '--stale-after', '1s']);
    const { sent: taken } = await expectIdentical(resumed);
    expect(summaryOf(taken.stderr)).toHaveProperty('tookOver');
  });
});

describe('s3 through the fault proxy: the conditional-write probe', () => {
  it('retries the probe itself, like any request: eight resets in a row do not end the send (they used to, exit 3)', async () => {
    // Eight: as many as the manifest write's own attempts, each of which used to run the probe once.
    const target = targets[0] as Target;
    const nth = [1, 2, 3, 4, 5, 6, 7, 8];
    const proxy = await proxyFor(target, 1, [
      { name: 'reset-probe', path: /\.bucketpipe-probe/, nth, action: { kind: 'reset', at: 'request' } },
    ]);
    const t = await transfer(target, 'probe-reset', proxy.endpoint);
    await expectIdentical(t);
    expect(proxy.fired()).toEqual({ 'reset-probe': 8 });
  }, 240_000);
});

function report(what: string, facts: Record<string, unknown>): void {
  if (process.env.BUCKETPIPE_FAULTS_REPORT) console.log(`[faults] ${what}: ${JSON.stringify(facts)}`);
}
