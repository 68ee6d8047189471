import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import {
  bucketpipe,
  errorLine,
  fixtures,
  MiB,
  mixedInputSuite,
  type Running,
  run,
  sha256File,
  waitFor,
  writeMixedStream,
} from './helpers.js';

// --metrics-addr on send and receive, scraped over HTTP while a real, paced transfer runs between
// two processes: the counters move, the receivers' lag rises while a receiver is stopped (SIGSTOP)
// and falls after SIGCONT, and /healthz tells a receiver waiting for its sender (healthy) from one
// whose sink does not take bytes (503).

const fastSend = ['--chunk-size', '1MiB', '--manifest-interval', '200ms'];
const fast = ['--poll-interval', '200ms'];

/** The base URL a process printed ("bucketpipe: metrics on http://127.0.0.1:PORT/metrics, …"). */
function metricsBase(process: Running): Promise<string> {
  return waitFor(() => /metrics on (http:\/\/\S+)\/metrics/.exec(process.stderr())?.[1], 20_000, 'the metrics address on stderr');
}

async function scrape(base: string): Promise<string> {
  const response = await fetch(`${base}/metrics`);
  expect(response.status).toBe(200);
  expect(response.headers.get('content-type')).toMatch(/^text\/plain/);
  return response.text();
}

async function health(base: string): Promise<{ code: number; body: Record<string, unknown> }> {
  const response = await fetch(`${base}/healthz`);
  return { code: response.status, body: (await response.json()) as Record<string, unknown> };
}

/** The sum of the samples of `name` whose labels include `labels`; undefined when there is none. */
function value(text: string, name: string, labels: Record<string, string> = {}): number | undefined {
  let sum: number | undefined;
  for (const line of text.split('\n')) {
    const match = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (\S+)$/.exec(line);
    if (!match || match[1] !== name) continue;
    const own = match[2] ?? '';
    if (!Object.entries(labels).every(([k, v]) => own.includes(`${k}="${v}"`))) continue;
    sum = (sum ?? 0) + Number(match[3]);
  }
  return sum;
}

function must(text: string, name: string, labels: Record<string, string> = {}): number {
  const found = value(text, name, labels);
  if (found === undefined) throw new Error(`no ${name}${JSON.stringify(labels)} in:\n${text}`);
  return found;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe('--metrics-addr: Prometheus metrics and /healthz during a real transfer', () => {
  const suite = mixedInputSuite('metrics', 96 * MiB);
  let small: string;
  let smallSha: string;

  beforeAll(async () => {
    small = join(suite.dir, 'small.bin');
    smallSha = await writeMixedStream(small, 48 * MiB, 2);
  });

  it('counters move during the transfer; the lag of a stopped receiver rises (sender view) and falls after SIGCONT (both views)', async () => {
    const stream = join(suite.dir, 'lag');
    const out = join(suite.dir, 'lag.out');
    // The receiver catches up at its --rate after the stop, so its own lag stays visible for a while.
    const receiver = bucketpipe([
      'receive',
      stream,
      ...fast,
      '--receiver-id',
      'r1',
      '--rate',
      '24MiB/s',
      '-o',
      out,
      '--metrics-addr',
      '127.0.0.1:0',
    ]);
    // 96 MiB at 12 MiB/s: about 8 s.
    const sender = bucketpipe([
      'send',
      stream,
      ...fastSend,
      '--metrics-addr',
      '127.0.0.1:0',
      '--',
      process.execPath,
      join(fixtures, 'paced-cat.mjs'),
      suite.input,
      String(12 * MiB),
    ]);
    const [sendUrl, receiveUrl] = await Promise.all([metricsBase(sender), metricsBase(receiver)]);
    expect(sendUrl).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);

    // Values move while the stream flows.
    const s1 = await waitFor(
      async () => {
        const text = await scrape(sendUrl);
        return must(text, 'bucketpipe_chunks_total', { command: 'send' }) >= 8 ? text : undefined;
      },
      20_000,
      'the sender to store 8 chunks',
    );
    const r1 = await scrape(receiveUrl);
    await sleep(1000);
    const [s2, r2] = await Promise.all([scrape(sendUrl), scrape(receiveUrl)]);
    for (const name of [
      'bucketpipe_source_bytes_total',
      'bucketpipe_raw_bytes_total',
      'bucketpipe_stored_bytes_total',
      'bucketpipe_chunks_total',
    ]) {
      expect(must(s2, name), name).toBeGreaterThan(must(s1, name));
    }
    expect(must(s2, 'bucketpipe_store_bytes_total', { op: 'put' })).toBeGreaterThan(
      must(s1, 'bucketpipe_store_bytes_total', { op: 'put' }),
    );
    expect(must(s2, 'bucketpipe_store_request_duration_seconds_count', { op: 'put', object: 'chunk' })).toBeGreaterThan(
      must(s1, 'bucketpipe_store_request_duration_seconds_count', { op: 'put', object: 'chunk' }),
    );
    for (const name of ['bucketpipe_raw_bytes_total', 'bucketpipe_chunks_total', 'bucketpipe_stored_bytes_total']) {
      expect(must(r2, name, { command: 'receive' }), name).toBeGreaterThan(must(r1, name, { command: 'receive' }));
    }
    expect(must(r2, 'bucketpipe_store_bytes_total', { op: 'get' })).toBeGreaterThan(
      must(r1, 'bucketpipe_store_bytes_total', { op: 'get' }),
    );
    expect(value(r2, 'bucketpipe_store_retries_total') ?? 0).toBe(0);
    expect(r2).toMatch(/^process_resident_memory_bytes\{command="receive"\} \d+/m);
    for (const url of [sendUrl, receiveUrl]) {
      const { code, body } = await health(url);
      expect(code, JSON.stringify(body)).toBe(200);
      expect(body.status).toMatch(/^(ok|waiting)$/);
    }

    // The sender reads the receivers' cursors: r1 keeps up (its cursor is at most about a second old).
    const before = await waitFor(
      async () => value(await scrape(sendUrl), 'bucketpipe_receiver_lag_chunks', { receiver: 'r1' }),
      10_000,
      "the sender to see r1's cursor",
    );
    expect(before).toBeLessThan(30);

    receiver.child.kill('SIGSTOP');
    let stoppedLag: number;
    try {
      // About 2 s at 12 MiB/s (1 MiB chunks); a busy machine may take longer to send them.
      const during = await waitFor(
        async () => {
          const text = await scrape(sendUrl);
          return must(text, 'bucketpipe_receiver_lag_chunks', { receiver: 'r1' }) >= before + 20 ? text : undefined;
        },
        10_000,
        "the sender's view of r1's lag to rise by 20 chunks while r1 is stopped",
      );
      stoppedLag = must(during, 'bucketpipe_receiver_lag_chunks', { receiver: 'r1' });
      expect(must(during, 'bucketpipe_receiver_lag_seconds', { receiver: 'r1' })).toBeGreaterThan(1);
    } finally {
      receiver.child.kill('SIGCONT');
    }

    // The receiver's own view: right after SIGCONT it reads the manifest, is behind, catches up.
    const behind = await waitFor(
      async () => {
        const text = await scrape(receiveUrl);
        return must(text, 'bucketpipe_lag_chunks') > 5 ? text : undefined;
      },
      5000,
      'the receiver to see its lag after SIGCONT',
    );
    expect(must(behind, 'bucketpipe_lag_seconds')).toBeGreaterThan(0);
    await waitFor(
      async () => (must(await scrape(receiveUrl), 'bucketpipe_lag_chunks') <= 2 ? true : undefined),
      20_000,
      'the receiver to catch up',
    );
    // And the sender's view of it falls again.
    await waitFor(
      async () => (must(await scrape(sendUrl), 'bucketpipe_receiver_lag_chunks', { receiver: 'r1' }) < stoppedLag / 2 ? true : undefined),
      20_000,
      "the sender's view of r1's lag to fall",
    );

    const [sent, received] = await Promise.all([sender.done, receiver.done]);
    expect(sent.code, sent.stderr).toBe(0);
    expect(received.code, received.stderr).toBe(0);
    expect(await sha256File(out)).toBe(suite.sha256);
    // The servers close with their commands.
    await expect(fetch(`${sendUrl}/metrics`)).rejects.toThrow();
    await expect(fetch(`${receiveUrl}/healthz`)).rejects.toThrow();
  });

  it('/healthz: 200 while waiting for the sender, 503 while the sink does not take bytes for longer than --stall-after, 200 again after', async () => {
    const stream = join(suite.dir, 'stall');
    const out = join(suite.dir, 'stall.out');
    // The sink reads nothing for its first 5 s: the first chunk the receiver writes fills the pipe and waits.
    const receiver = bucketpipe(
      [
        'receive',
        stream,
        ...fast,
        '-q',
        '--metrics-addr',
        '127.0.0.1:0',
        '--stall-after',
        '1s',
        '--',
        'sh',
        '-c',
        `sleep 5; cat > '${out}'`,
      ],
      { stdio: ['ignore', 'inherit', 'pipe'] },
    );
    const url = await metricsBase(receiver);
    const started = Date.now();

    // No stream yet: the receiver waits for it, longer than --stall-after, and that is not a stall.
    await sleep(1600);
    const waiting = await health(url);
    expect(waiting.code, JSON.stringify(waiting.body)).toBe(200);
    expect(waiting.body).toMatchObject({ status: 'waiting', command: 'receive', stallAfterSeconds: 1 });
    expect(String(waiting.body.waitingFor)).toMatch(/stream to start/);

    // 48 MiB at 8 MiB/s: the sender runs until well after the sink starts reading.
    const sender = bucketpipe([
      'send',
      stream,
      ...fastSend,
      '--',
      process.execPath,
      join(fixtures, 'paced-cat.mjs'),
      small,
      String(8 * MiB),
    ]);
    const stalled = await waitFor(
      async () => {
        const answer = await health(url);
        return answer.code === 503 ? answer : undefined;
      },
      4000,
      '/healthz to answer 503',
    );
    expect(Date.now() - started).toBeLessThan(5000);
    expect(stalled.body).toMatchObject({ status: 'stalled', command: 'receive' });
    expect(String(stalled.body.reason)).toMatch(/the sink has not taken a write/);
    // The stall counter counts a write once it has waited --stall-after; /healthz may say stalled a
    // moment earlier (no progress for that long, the write pending for less): wait for the count.
    const during = await waitFor(
      async () => {
        const metrics = await scrape(url);
        return must(metrics, 'bucketpipe_sink_stalls_total') >= 1 ? metrics : undefined;
      },
      3000,
      'the stalled write to be counted',
    );
    expect(must(during, 'bucketpipe_stalled')).toBe(1);
    expect(must(during, 'bucketpipe_sink_stalls_total')).toBeGreaterThanOrEqual(1);
    expect(must(during, 'bucketpipe_sink_blocked_seconds_total')).toBeGreaterThan(1);

    // The sink reads again: healthy while the transfer goes on.
    const recovered = await waitFor(
      async () => {
        const answer = await health(url);
        return answer.code === 200 ? answer : undefined;
      },
      10_000,
      '/healthz to answer 200 again',
    );
    expect(recovered.body.status).toMatch(/^(ok|waiting)$/);
    expect(must(await scrape(url), 'bucketpipe_stalled')).toBe(0);

    const [sent, received] = await Promise.all([sender.done, receiver.done]);
    expect(sent.code, sent.stderr).toBe(0);
    expect(received.code, received.stderr).toBe(0);
    expect(await sha256File(out)).toBe(smallSha);
  });

  it('refuses a bad or busy --metrics-addr, and --stall-after without it, as usage errors', async () => {
    const stream = join(suite.dir, 'usage');
    const bad = await run(['receive', stream, '--metrics-addr', 'localhost']);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/--metrics-addr localhost: write it as host:port/);
    const lone = await run(['send', stream, '--stall-after', '5s', '--', 'true']);
    expect(lone.code).toBe(2);
    expect(lone.stderr).toMatch(/--stall-after applies only with --metrics-addr/);
    const holder = bucketpipe(['receive', stream, '--metrics-addr', '127.0.0.1:0', '-q']);
    try {
      const taken = new URL(await metricsBase(holder)).host;
      const busy = await run(['relay', stream, `${stream}-copy`, '--metrics-addr', taken]);
      expect(busy.code, busy.stderr).toBe(2);
      expect(errorLine(busy.stderr)).toMatch(/cannot listen: the address is in use \[BP_METRICS_ADDR\]/);
    } finally {
      holder.child.kill('SIGTERM');
      await holder.done;
    }
  });
});
