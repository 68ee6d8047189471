import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { join } from 'node:path';
import { beforeAll, describe, expect, inject, it } from 'vitest';
import {
  bucketpipe,
  createS3Bucket,
  fixtures,
  MiB,
  mixedInputSuite,
  outputFile,
  run,
  s3Env,
  sha256File,
  summaryOf,
  waitFor,
} from './helpers.js';
import { GCS_TEST_BUCKET } from './servers/gcs.js';

// A replication series relayed live from S3 (Ceph radosgw) to GCS (the GCS JSON API test server):
// the series records are written with the replication package's functions (fixtures/series-record.mjs),
// each stream is sent with plain `bucketpipe send` into <series>/streams/<seq>/ while the relay and
// a receiver at the destination run. No ZFS: the streams are bytes.
const s3 = inject('s3');
const gcs = inject('gcs');
const bucket = `series-${randomUUID().slice(0, 8)}`;
const s3Args = ['--s3-endpoint', s3.endpoint, '--s3-path-style'];
const gcsArgs = ['--gcs-endpoint', gcs.endpoint];
const env = s3Env(s3);
const streamKey = (seq: number) => `streams/${String(seq).padStart(12, '0')}`;
/** Stream sizes: the full one, then two increments. */
const SIZES = [24 * MiB, 6 * MiB, 3 * MiB + 12_345];

function seriesRecord(...args: string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [join(fixtures, 'series-record.mjs'), ...args], { stdio: ['ignore', 'inherit', 'inherit'], env });
    child.on('error', reject);
    child.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`series-record.mjs ${args.join(' ')} exited with ${code}`))));
  });
}

describe('relay of a series, S3 → GCS, live (real CLI processes, real servers)', () => {
  const suite = mixedInputSuite('series-relay', SIZES[0] as number, 9);

  beforeAll(async () => {
    await createS3Bucket(s3, bucket);
  });

  it('relays three streams as they are sent, SIGKILLed once and restarted; each destination stream receives identical bytes; the receiver record is mirrored back', async () => {
    const s3Url = `s3://${bucket}/migr`;
    const gsUrl = `gs://${GCS_TEST_BUCKET}/migr-${randomUUID().slice(0, 8)}`;
    await seriesRecord('start', s3Url, '--s3-endpoint', s3.endpoint);
    const relayArgs = ['relay', s3Url, gsUrl, '--poll-interval', '200ms', ...s3Args, ...gcsArgs];
    let relay = bucketpipe(relayArgs, { env });

    const inputs: string[] = [];
    for (const [seq, size] of SIZES.entries()) {
      const input = join(suite.dir, `stream-${seq}.bin`);
      await new Promise<void>((resolve, reject) => {
        const child = spawn('sh', ['-c', `tail -c ${size} '${suite.input}' > '${input}'`], { stdio: 'inherit' });
        child.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`tail exited ${code}`))));
      });
      inputs.push(input);
      await seriesRecord('register', s3Url, String(seq), ...(seq === SIZES.length - 1 ? ['--final'] : []), '--s3-endpoint', s3.endpoint);

      // The receiver at the destination starts before the stream is sent: it waits for the relay's copy.
      const path = join(suite.dir, `received-${seq}.bin`);
      const out = await outputFile(path);
      const receiver = bucketpipe(['receive', `${gsUrl}/${streamKey(seq)}`, '--poll-interval', '200ms', '-q', ...gcsArgs], {
        env,
        stdoutFile: out.fd,
      });
      const sender = bucketpipe(
        [
          'send',
          `${s3Url}/${streamKey(seq)}`,
          '--chunk-size',
          '1MiB',
          '--manifest-interval',
          '200ms',
          '-q',
          ...s3Args,
          '--',
          process.execPath,
          join(fixtures, 'paced-cat.mjs'),
          input,
          String(3 * MiB), // about 8 s for the full stream: long enough to see it relayed live, also on a busy machine
        ],
        { env },
      );
      // Live: the relay has published part of the stream at the destination before the sender finished.
      if (seq === 0) {
        await waitFor(
          async () => {
            const inspected = await run(['inspect', `${gsUrl}/${streamKey(0)}`, '--json', ...gcsArgs], { env });
            if (inspected.code !== 0) return undefined;
            return (JSON.parse(inspected.stdout) as { manifest: { watermark: number } }).manifest.watermark > 0 ? true : undefined;
          },
          30_000,
          'the first chunks of stream 0 at the destination',
        );
        expect(sender.child.exitCode, 'the sender was still sending').toBeNull();
        // Killed mid-stream and restarted, the relay carries on from the destination's series record.
        relay.child.kill('SIGKILL');
        await relay.done;
        relay = bucketpipe(relayArgs, { env });
      }
      const sent = await sender.done;
      expect(sent.code, sent.stderr).toBe(0);
      const received = await receiver.done.finally(() => out.close());
      expect(received.code, received.stderr).toBe(0);
      expect(await sha256File(path), `stream ${seq}`).toBe(await sha256File(input));
      expect(relay.child.exitCode, relay.stderr()).toBeNull();
      // What replicate receive writes at the destination once the stream is applied.
      await seriesRecord(
        'receiver',
        gsUrl,
        'gcp-1',
        seq === SIZES.length - 1 ? 'done' : 'waiting',
        String(seq),
        '--gcs-endpoint',
        gcs.endpoint,
      );
    }

    const relayed = await relay.done;
    expect(relayed.code, relayed.stderr).toBe(0);
    expect(summaryOf(relayed.stderr)).toMatchObject({ command: 'relay', streams: 3, streamsRelayed: 3 });

    const destination = await run(['inspect', gsUrl, '--json', ...gcsArgs], { env });
    expect(destination.code, destination.stderr).toBe(0);
    const copy = JSON.parse(destination.stdout) as {
      record: { streams: number; final?: { seq: number } };
      totals: { rawBytes: number; byState: { complete: number } };
    };
    expect(copy.record).toMatchObject({ streams: 3, final: { seq: 2 } });
    expect(copy.totals).toMatchObject({ rawBytes: SIZES.reduce((a, b) => a + b, 0), byState: { complete: 3 } });

    // The destination's receiver is visible at the source, where the sender daemon prunes by it.
    const source = await run(['inspect', s3Url, '--json', ...s3Args], { env });
    const atSource = JSON.parse(source.stdout) as { receivers: Array<{ receiverId: string; state: string; applied: { seq: number } }> };
    expect(atSource.receivers).toEqual([
      expect.objectContaining({ receiverId: 'gcp-1', state: 'done', applied: expect.objectContaining({ seq: 2 }) }),
    ]);
  });
});
