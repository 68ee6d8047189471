// Measures the replication daemons (not a test): with the source dataset written at a steady rate
// and `replicate send --every`, the replication lag a receiver shows (now minus the creation time
// of the newest snapshot on the target; median and max over the run) and the cut-over time (from
// `replicate cutover` to the target holding the final snapshot), with the default poll and
// manifest intervals and with tuned ones. Real zfs-fuse pools; the directory store, or S3
// (a throwaway radosgw) with --s3.
//   npm run build && node scripts/measure-replication.mjs [--rate 20MB/s] [--every 10s] [--seconds 90] [--s3]
import { createHash } from 'node:crypto';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import {
  cli,
  eventsOf,
  importTs,
  lastLine,
  MiB,
  percentile,
  removeWork,
  sleep,
  startS3,
  steadyWriter,
  workDir,
} from './replicate-harness.mjs';

const { values } = parseArgs({
  options: {
    rate: { type: 'string', default: '20' },
    every: { type: 'string', default: '10s' },
    seconds: { type: 'string', default: '90' },
    s3: { type: 'boolean' },
  },
});
const rate = Number.parseFloat(values.rate) * 1e6;
const seconds = Number(values.seconds);
const log = (text) => process.stderr.write(`measure: ${text}\n`);

const configurations = [
  { name: 'default intervals', send: [], receive: [] },
  {
    name: 'tuned: poll and manifest 200ms',
    send: ['--poll-interval', '200ms', '--manifest-interval', '200ms'],
    receive: ['--poll-interval', '200ms'],
  },
];

async function treeHash(dir) {
  const hash = createHash('sha256');
  for (const name of (await readdir(dir)).sort()) hash.update(name).update(await readFile(join(dir, name)));
  return hash.digest('hex');
}

async function main() {
  const work = workDir('measure-replication');
  const children = new Set();
  const { startZfs } = await importTs('test/servers/zfs.ts', work);
  const zfs = await startZfs('measure');
  const s3 = values.s3 ? await startS3(work, 'measure') : undefined;
  const storeArgs = s3 ? ['--s3-endpoint', s3.endpoint, '--s3-path-style'] : [];
  const env = s3?.env ?? process.env;
  const rows = [];
  try {
    const a = await zfs.createPool('msrc', 2048 * MiB);
    const b = await zfs.createPool('mdst', 2048 * MiB);
    for (const [i, config] of configurations.entries()) {
      const source = `${a.name}/m${i}`;
      const target = `${b.name}/m${i}`;
      await zfs.zfs('create', source);
      const sourceDir = (await zfs.zfs('get', '-H', '-o', 'value', 'mountpoint', source)).trim();
      const series = s3 ? `s3://measure/m${i}` : join(work, `series-${i}`);
      const readReceiver = async () => {
        try {
          if (s3) {
            const { GetObjectCommand } = await import('@aws-sdk/client-s3');
            const got = await s3.client.send(new GetObjectCommand({ Bucket: 'measure', Key: `m${i}/receivers/r1.json` }));
            return JSON.parse(await got.Body.transformToString());
          }
          return JSON.parse(await readFile(join(series, 'receivers', 'r1.json'), 'utf8'));
        } catch {
          return undefined;
        }
      };
      log(`${config.name}: writing ${(rate / 1e6).toFixed(0)} MB/s into ${source}, --every ${values.every}, ${seconds}s`);
      const writer = steadyWriter(sourceDir, rate);
      const started = performance.now();
      const sender = cli(['replicate', 'send', series, '--dataset', source, '--every', values.every, ...config.send, ...storeArgs], {
        env,
        children,
      });
      const receiver = cli(['replicate', 'receive', series, '--dataset', target, '--receiver-id', 'r1', ...config.receive, ...storeArgs], {
        env,
        children,
      });
      const lags = [];
      while (performance.now() - started < seconds * 1000) {
        await sleep(500);
        const record = await readReceiver();
        if (record?.applied) lags.push(Date.now() / 1000 - record.applied.creation);
      }
      const written = await writer.stop();
      const writeSeconds = (performance.now() - started) / 1000;
      const cut = await cli(['replicate', 'cutover', series, '--poll-interval', '100ms', ...storeArgs], { env, children }).done;
      if (cut.code !== 0) throw new Error(`cutover failed: ${lastLine(cut.stderr)}`);
      const summary = eventsOf(cut.stderr).findLast((e) => e.event === 'summary');
      const [sent, received] = await Promise.all([sender.done, receiver.done]);
      if (sent.code !== 0) throw new Error(`replicate send failed: ${lastLine(sent.stderr)}`);
      if (received.code !== 0) throw new Error(`replicate receive failed: ${lastLine(received.stderr)}`);
      await zfs.zfs('umount', target);
      await zfs.zfs('mount', target);
      const targetDir = (await zfs.zfs('get', '-H', '-o', 'value', 'mountpoint', target)).trim();
      const identical = (await treeHash(sourceDir)) === (await treeHash(targetDir));
      const applied = eventsOf(received.stderr).filter((e) => e.event === 'applied');
      rows.push({
        configuration: config.name,
        'written MB/s': (written / 1e6 / writeSeconds).toFixed(1),
        streams: summary.final.seq + 1,
        'lag median s': percentile(lags, 50).toFixed(1),
        'lag p90 s': percentile(lags, 90).toFixed(1),
        'lag max s': Math.max(...lags).toFixed(1),
        'cut-over s': Number(summary.seconds).toFixed(2),
        'final stream MB': ((applied.at(-1)?.rawBytes ?? 0) / 1e6).toFixed(1),
        identical,
      });
      log(JSON.stringify(rows.at(-1)));
    }
  } finally {
    for (const child of children) child.kill('SIGKILL');
    await zfs.stop();
    s3?.stop();
    removeWork(work);
  }
  console.table(rows);
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
