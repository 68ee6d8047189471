import { execFile, spawn } from 'node:child_process';
import { once } from 'node:events';
import { readFile, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bucketpipe, fixtures, MiB, type Running, repoRoot, tempDir, waitFor, writeMixedStream } from './helpers.js';

// The alerting that ships in deploy/monitoring: promtool checks and unit-tests the rules file; every
// metric the rules and the dashboard name is exported by a live transfer; and a real Prometheus scraping a live
// transfer fires the lag alert while the receiver is stopped (SIGSTOP), and clears it after SIGCONT.
const monitoring = join(repoRoot, 'deploy/monitoring');
const rulesFile = join(monitoring, 'bucketpipe.rules.yml');
const exec = promisify(execFile);

/** Metrics only the replication daemons export (they need ZFS): checked against their source below. */
const REPLICATION_ONLY = new Set([
  'bucketpipe_replication_lag_seconds',
  'bucketpipe_streams_applied_total',
  'bucketpipe_streams_sent_total',
  'bucketpipe_series_stream',
]);

function metricsBase(process: Running): Promise<string> {
  return waitFor(() => /metrics on (http:\/\/\S+)\/metrics/.exec(process.stderr())?.[1], 20_000, 'the metrics address on stderr');
}

/** The metric names a /metrics text declares (`# TYPE name …`). */
async function exportedNames(base: string): Promise<Set<string>> {
  const text = await (await fetch(`${base}/metrics`)).text();
  return new Set([...text.matchAll(/^# TYPE (\S+) /gm)].map((m) => m[1] as string));
}

/** The bucketpipe_* names an expression text mentions, histogram suffixes folded to the metric. */
function namedMetrics(text: string): Set<string> {
  return new Set([...text.matchAll(/\bbucketpipe_[a-z0-9_]+/g)].map((m) => m[0].replace(/_(bucket|count|sum)$/, '')));
}

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  if (address === null || typeof address === 'string') throw new Error('no port');
  return address.port;
}

describe('deploy/monitoring: the alert rules and the dashboard', () => {
  it('name replication metrics the replication daemons register', async () => {
    const source = await readFile(join(repoRoot, 'packages/cli/src/metrics/replication-series.ts'), 'utf8');
    for (const name of REPLICATION_ONLY) expect(source, name).toContain(`'${name}'`);
    const named = namedMetrics(await readFile(join(monitoring, 'bucketpipe.dashboard.json'), 'utf8'));
    expect([...REPLICATION_ONLY].filter((name) => !named.has(name))).toEqual([]);
  });

  it('pass promtool check rules and promtool test rules', async () => {
    const checked = await exec('promtool', ['check', 'rules', rulesFile]);
    expect(checked.stdout).toMatch(/SUCCESS: 6 rules found/);
    const tested = await exec('promtool', ['test', 'rules', join(monitoring, 'tests/bucketpipe.test.yml')]);
    expect(tested.stdout).toMatch(/SUCCESS/);
  });
});

describe('deploy/monitoring against a live transfer (real CLIs, real Prometheus)', () => {
  let dir: string;
  let cleanup: () => Promise<void>;
  let input: string;

  beforeAll(async () => {
    ({ path: dir, cleanup } = await tempDir('monitoring'));
    input = join(dir, 'input');
    await writeMixedStream(input, 96 * MiB, 5);
  });
  afterAll(() => cleanup());

  it('exports every metric the rules name; the lag alert fires while the receiver is stopped and clears after SIGCONT', async () => {
    const stream = join(dir, 'stream');
    // 96 MiB at 4 MiB/s: about 24 s of a live stream.
    const sender = bucketpipe([
      'send',
      stream,
      '--chunk-size',
      '1MiB',
      '--manifest-interval',
      '200ms',
      '--metrics-addr',
      '127.0.0.1:0',
      '--',
      process.execPath,
      join(fixtures, 'paced-cat.mjs'),
      input,
      String(4 * MiB),
    ]);
    const receiver = bucketpipe([
      'receive',
      stream,
      '--poll-interval',
      '200ms',
      '--receiver-id',
      'r1',
      '-o',
      join(dir, 'out'),
      '--metrics-addr',
      '127.0.0.1:0',
    ]);
    const [sendUrl, receiveUrl] = await Promise.all([metricsBase(sender), metricsBase(receiver)]);

    const exported = new Set([...(await exportedNames(sendUrl)), ...(await exportedNames(receiveUrl))]);
    const rules = await readFile(rulesFile, 'utf8');
    const dashboard = await readFile(join(monitoring, 'bucketpipe.dashboard.json'), 'utf8');
    const named = [...namedMetrics(rules + dashboard)].filter((name) => !REPLICATION_ONLY.has(name));
    expect(named.length).toBeGreaterThan(15);
    expect(named.filter((name) => !exported.has(name))).toEqual([]);

    // The shipped rules, with thresholds and durations a test can wait for.
    const quick = rules.replaceAll('> 300', '> 5').replace(/for: \d+m/g, 'for: 2s');
    expect(quick).not.toEqual(rules);
    await writeFile(join(dir, 'rules.yml'), quick);
    const port = await freePort();
    const targets = [sendUrl, receiveUrl].map((url) => `'${new URL(url).host}'`).join(', ');
    await writeFile(
      join(dir, 'prometheus.yml'),
      `global: { scrape_interval: 1s, evaluation_interval: 1s }\nrule_files: ['rules.yml']\nscrape_configs:\n  - job_name: bucketpipe\n    static_configs: [{ targets: [${targets}] }]\n`,
    );
    const prometheus = spawn(
      'prometheus',
      [
        `--config.file=${join(dir, 'prometheus.yml')}`,
        `--storage.tsdb.path=${join(dir, 'tsdb')}`,
        `--web.listen-address=127.0.0.1:${port}`,
      ],
      { stdio: ['ignore', 'ignore', 'pipe'] },
    );
    let prometheusLog = '';
    prometheus.stderr.on('data', (data: Buffer) => {
      prometheusLog += data.toString();
    });
    const api = `http://127.0.0.1:${port}/api/v1`;
    const lagState = async (): Promise<string | undefined> => {
      const response = await fetch(`${api}/rules?type=alert`).catch(() => undefined);
      if (!response?.ok) return undefined;
      const body = (await response.json()) as { data: { groups: Array<{ rules: Array<{ name: string; state: string }> }> } };
      return body.data.groups.flatMap((g) => g.rules).find((r) => r.name === 'BucketpipeReceiverLagging')?.state;
    };
    const firingLag = async () => {
      const body = (await (await fetch(`${api}/alerts`)).json()) as {
        data: { alerts: Array<{ labels: Record<string, string>; state: string }> };
      };
      return body.data.alerts.filter((a) => a.labels.alertname === 'BucketpipeReceiverLagging' && a.state === 'firing');
    };
    try {
      // Both targets scraped, and the alert evaluated as inactive while the receiver keeps up.
      await waitFor(
        async () => {
          const response = await fetch(`${api}/query?query=${encodeURIComponent('count(up{job="bucketpipe"} == 1)')}`).catch(
            () => undefined,
          );
          if (!response?.ok) return undefined;
          const body = (await response.json()) as { data: { result: Array<{ value: [number, string] }> } };
          return body.data.result[0]?.value[1] === '2' ? true : undefined;
        },
        20_000,
        `Prometheus to scrape both targets (${prometheusLog.slice(-500)})`,
      );
      await sleep(3000);
      expect(await lagState()).toBe('inactive');

      receiver.child.kill('SIGSTOP');
      const firing = await waitFor(
        async () => ((await lagState()) === 'firing' ? firingLag() : undefined),
        30_000,
        'the lag alert to fire',
      );
      expect(firing).toEqual([
        expect.objectContaining({ labels: expect.objectContaining({ command: 'send', receiver: 'r1', severity: 'page' }) }),
      ]);

      receiver.child.kill('SIGCONT');
      await waitFor(async () => ((await lagState()) === 'inactive' ? true : undefined), 30_000, 'the lag alert to clear');
      expect(await firingLag()).toEqual([]);

      // The receiver, caught up again, reads the live sender's heartbeat (written every 10 s) from the manifest.
      const text = await (await fetch(`${receiveUrl}/metrics`)).text();
      const age = Number(/^bucketpipe_sender_heartbeat_age_seconds\{[^}]*\} (\S+)$/m.exec(text)?.[1]);
      expect(age).toBeGreaterThanOrEqual(0);
      expect(age).toBeLessThan(30);
    } finally {
      receiver.child.kill('SIGCONT');
      prometheus.kill('SIGTERM');
      await once(prometheus, 'exit');
    }
    const [sent, received] = await Promise.all([sender.done, receiver.done]);
    expect(sent.code, sent.stderr).toBe(0);
    expect(received.code, received.stderr).toBe(0);
  });
});

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
