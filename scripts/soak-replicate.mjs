// Replication soak (not part of CI): the sender and receiver daemons on real zfs-fuse pools, through
// S3 (a throwaway radosgw) behind the fault-injecting proxy, with files written on the source
// throughout, and the daemons SIGKILLed at seeded random moments — the sender, the receiver or both
// — and started again at once, as systemd would. At the end: cut-over, then the target's files and
// snapshots are compared with the source's. Every daemon exit that is not a planned kill counts as
// a restart caused by a fault (the goal: none).
//   npm run soak -- --replicate [--kills 100] [--seed 1] [--fault-rate 0.03] [--rate 4MB/s] [--every 2s]
import { createHash } from 'node:crypto';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { cli, eventsOf, importTs, lastLine, MiB, removeWork, seeded, sleep, startS3, steadyWriter, workDir } from './replicate-harness.mjs';

const { values } = parseArgs({
  options: {
    replicate: { type: 'boolean' },
    kills: { type: 'string', default: '100' },
    seed: { type: 'string', default: '1' },
    'fault-rate': { type: 'string', default: '0.03' },
    rate: { type: 'string', default: '4' },
    every: { type: 'string', default: '2s' },
    help: { type: 'boolean', short: 'h' },
  },
});
if (values.help) {
  process.stdout.write(
    'usage: npm run soak -- --replicate [--kills N (100)] [--seed S (1)] [--fault-rate P (0.03)] [--rate MB/s (4)] [--every D (2s)]\n',
  );
  process.exit(0);
}
const plannedKills = Number(values.kills);
const seed = Number(values.seed);
const faultRate = Number(values['fault-rate']);
const random = seeded(seed);
const log = (text) => process.stderr.write(`soak-replicate: ${text}\n`);

async function treeHash(dir) {
  const hash = createHash('sha256');
  for (const name of (await readdir(dir)).sort()) hash.update(name).update(await readFile(join(dir, name)));
  return hash.digest('hex');
}

/**
 * One daemon kept running: started again after every exit. A SIGKILL it was told about is a
 * planned kill; any other exit before the end is a restart caused by a fault, and is logged.
 */
function keepRunning(name, args, env, children, faults) {
  let current;
  let planned = false;
  let finished;
  const ended = new Promise((resolve) => {
    finished = resolve;
  });
  const start = () => {
    current = cli(args, { env, children });
    const mine = current;
    void mine.done.then((result) => {
      if (result.code === 0) return finished(result);
      if (planned && result.signal === 'SIGKILL') planned = false;
      else {
        faults.push(`${name} exited ${result.code ?? result.signal}: ${lastLine(result.stderr)}`);
        log(`UNPLANNED: ${faults.at(-1)}`);
      }
      if (!stopping) setTimeout(start, 200);
    });
  };
  let stopping = false;
  start();
  return {
    kill: () => {
      planned = true;
      current.child.kill('SIGKILL');
      return current.done;
    },
    ended,
    stop: () => {
      stopping = true;
      current.child.kill('SIGKILL');
    },
  };
}

async function main() {
  const work = workDir('soak-replicate');
  const children = new Set();
  const { startZfs } = await importTs('test/servers/zfs.ts', work);
  const { FaultProxy } = await importTs('test/servers/fault-proxy.ts', work);
  const zfs = await startZfs('soakr');
  const s3 = await startS3(work, 'soak');
  const proxy = new FaultProxy({ target: s3.endpoint, flavor: 's3', seed });
  await proxy.listen();
  proxy
    .add({ name: 'reset-request', probability: faultRate, action: { kind: 'reset', at: 'request' } })
    .add({ name: 'reset-response', probability: faultRate, action: { kind: 'reset', at: 'response' } })
    .add({ name: 'lost-reply-500', probability: faultRate, action: { kind: 'status', status: 500, afterForward: true } })
    .add({ name: '503', probability: faultRate, action: { kind: 'status', status: 503 } })
    .add({ name: 'stall', probability: faultRate / 2, action: { kind: 'stall', afterBytes: 1000, ms: 1500 } })
    .add({ name: 'truncate', method: 'GET', path: /chunks\//, probability: faultRate, action: { kind: 'truncate', afterBytes: 65536 } });
  const viaProxy = ['--s3-endpoint', proxy.endpoint, '--s3-path-style'];
  const series = 's3://soak/series';
  const unplanned = [];
  let exitCode = 1;
  try {
    const a = await zfs.createPool('ssrc', 1024 * MiB);
    const b = await zfs.createPool('sdst', 1024 * MiB);
    const source = `${a.name}/pg`;
    const target = `${b.name}/pg`;
    await zfs.zfs('create', source);
    const sourceDir = (await zfs.zfs('get', '-H', '-o', 'value', 'mountpoint', source)).trim();
    const writer = steadyWriter(sourceDir, Number.parseFloat(values.rate) * 1e6, 32);
    const started = performance.now();
    const common = ['--poll-interval', '250ms', ...viaProxy];
    const sender = keepRunning(
      'replicate send',
      [
        'replicate',
        'send',
        series,
        '--dataset',
        source,
        '--every',
        values.every,
        '--chunk-size',
        '1MiB',
        '--manifest-interval',
        '250ms',
        ...common,
      ],
      s3.env,
      children,
      unplanned,
    );
    const receiver = keepRunning(
      'replicate receive',
      ['replicate', 'receive', series, '--dataset', target, '--receiver-id', 'soak', '--poll-interval', '250ms', ...viaProxy],
      s3.env,
      children,
      unplanned,
    );
    const kills = { sender: 0, receiver: 0, both: 0 };
    for (let n = 0; n < plannedKills; n++) {
      await sleep(500 + random() * 3500);
      const pick = random();
      const victim = pick < 0.4 ? 'sender' : pick < 0.8 ? 'receiver' : 'both';
      kills[victim]++;
      await Promise.all([victim !== 'receiver' ? sender.kill() : null, victim !== 'sender' ? receiver.kill() : null]);
      if ((n + 1) % 10 === 0)
        log(
          `${n + 1} kills (${JSON.stringify(kills)}), ${unplanned.length} unplanned exits, ${(writer.written / MiB).toFixed(0)} MiB written`,
        );
    }
    const written = await writer.stop();
    log('kills done; cutting over');
    const cut = await cli(['replicate', 'cutover', series, '--poll-interval', '250ms', ...viaProxy], { env: s3.env, children }).done;
    if (cut.code !== 0) throw new Error(`cutover failed: ${lastLine(cut.stderr)}`);
    const summary = eventsOf(cut.stderr).findLast((e) => e.event === 'summary');
    const [sent, received] = await Promise.all([sender.ended, receiver.ended]);
    const seconds = (performance.now() - started) / 1000;
    await zfs.zfs('umount', target);
    await zfs.zfs('mount', target);
    const targetDir = (await zfs.zfs('get', '-H', '-o', 'value', 'mountpoint', target)).trim();
    const identical = (await treeHash(sourceDir)) === (await treeHash(targetDir));
    const snapshots = (await zfs.zfs('list', '-H', '-o', 'name', '-t', 'snapshot', '-s', 'createtxg', '-d', '1', target))
      .split('\n')
      .filter(Boolean);
    const { GetObjectCommand } = await import('@aws-sdk/client-s3');
    const expected = [];
    for (let seq = 0; seq <= summary.final.seq; seq++) {
      const got = await s3.client.send(
        new GetObjectCommand({ Bucket: 'soak', Key: `series/streams/${String(seq).padStart(12, '0')}/replication.json` }),
      );
      expected.push(`${target}@${JSON.parse(await got.Body.transformToString()).to.name}`);
    }
    const inOrder = JSON.stringify(snapshots) === JSON.stringify(expected);
    const faults = proxy.log.filter((q) => q.fault !== undefined).length;
    const result = {
      kills: plannedKills,
      ...kills,
      faults,
      requests: proxy.log.length,
      streams: summary.final.seq + 1,
      writtenMiB: Math.round(written / MiB),
      identical,
      snapshotsInOrder: inOrder,
      unplannedRestarts: unplanned.length,
      cutoverSeconds: Number(summary.seconds),
      seconds: Math.round(seconds),
      senderExit: sent.code,
      receiverExit: received.code,
    };
    process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
    if (unplanned.length > 0) process.stdout.write(`unplanned exits:\n${unplanned.map((u) => `  ${u}`).join('\n')}\n`);
    exitCode = identical && inOrder && unplanned.length === 0 ? 0 : 1;
  } finally {
    for (const child of children) child.kill('SIGKILL');
    await proxy.close?.();
    await zfs.stop();
    s3.stop();
    removeWork(work);
  }
  return exitCode;
}

main().then(
  (code) => process.exit(code),
  (error) => {
    process.stderr.write(`soak-replicate: ${error.stack ?? error}\n`);
    process.exit(1);
  },
);
