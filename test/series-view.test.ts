import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { bucketpipe, fixtures, MiB, mixedInputSuite, run, waitFor } from './helpers.js';

// inspect and ls on a replication series in a directory store: the records written with the
// replication package's functions (test/fixtures/series-record.mjs), each stream sent with plain
// `bucketpipe send` — what the sender daemon does, without ZFS.
function seriesRecord(...args: string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [join(fixtures, 'series-record.mjs'), ...args], { stdio: ['ignore', 'inherit', 'inherit'] });
    child.on('error', reject);
    child.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`series-record.mjs ${args.join(' ')} exited with ${code}`))));
  });
}

const streamUrl = (series: string, seq: number) => join(series, 'streams', String(seq).padStart(12, '0'));

interface InspectedSeries {
  kind: string;
  record: { seriesId: string; dataset: string; streams: number; final?: { seq: number } };
  sender: { state: string; heartbeatAgeSeconds: number };
  totals: { streams: number; rawBytes: number; byState: Record<string, number> };
  shown: { from: number; count: number };
  streams: Array<{ seq: number; from: { name: string } | null; to: { name: string }; state: string; rawBytes: number; final: boolean }>;
  receivers: Array<{ receiverId: string; dataset: string; state: string; applied: { seq: number } | null; lagSeconds: number | null }>;
  finished: boolean;
}

describe('inspect and ls on a series (directory store, real CLI processes)', () => {
  const suite = mixedInputSuite('series-view', 3 * MiB, 5);

  it('inspect shows the series, every stream (not started before its manifest), the receivers and their lag; ls lists the series as one entry', async () => {
    const series = join(suite.dir, 'migr');
    await seriesRecord('start', series);
    await seriesRecord('register', series, '0');
    const sent = await run(['send', streamUrl(series, 0), '--chunk-size', '1MiB', '-q', '--', 'cat', suite.input]);
    expect(sent.code, sent.stderr).toBe(0);
    await seriesRecord('register', series, '1', '--final');
    await seriesRecord('receiver', series, 'gcp-1', 'waiting', '0');

    const json = await run(['inspect', series, '--json']);
    expect(json.code, json.stderr).toBe(0);
    const inspected = JSON.parse(json.stdout) as InspectedSeries;
    expect(inspected).toMatchObject({
      kind: 'series',
      record: { dataset: 'tank/pgdata', streams: 2, final: { seq: 1 } },
      sender: { state: 'live' },
      totals: { streams: 2, rawBytes: 3 * MiB, byState: { complete: 1, 'not started': 1, sending: 0, aborted: 0 } },
      shown: { from: 0, count: 2 },
      finished: false,
    });
    expect(inspected.streams.map((s) => [s.seq, s.from?.name ?? null, s.to.name, s.state, s.final])).toEqual([
      [0, null, 's0', 'complete', false],
      [1, 's0', 's1', 'not started', true],
    ]);
    expect(inspected.receivers).toHaveLength(1);
    expect(inspected.receivers[0]).toMatchObject({ receiverId: 'gcp-1', dataset: 'tank/pgdata', state: 'waiting', applied: { seq: 0 } });
    // The fixture's applied snapshot was created 30 s before the record was written.
    expect(inspected.receivers[0]?.lagSeconds).toBeGreaterThanOrEqual(30);
    expect(inspected.receivers[0]?.lagSeconds).toBeLessThan(60);

    const text = await run(['inspect', series]);
    expect(text.code, text.stderr).toBe(0);
    expect(text.stdout).toMatch(/^dataset\s+tank\/pgdata \(source\)$/m);
    expect(text.stdout).toMatch(/^streams\s+2: 1 complete, 1 not started$/m);
    expect(text.stdout).toMatch(/^final\s+yes: stream 1, @s1/m);
    expect(text.stdout).toMatch(/^receiver gcp-1\s+waiting; applied stream 0 \(@s0\), replication lag 3\ds; into tank\/pgdata on gcp-vm/m);
    expect(text.stdout).toMatch(/^0\s+\(full\) →\s+@s0\s+3\.00 MiB\s+.*complete$/m);
    expect(text.stdout).toMatch(/^1\s+@s0\s+→\s+@s1 \(final\)\s+-\s+-\s+not started$/m);

    const newest = await run(['inspect', series, '--streams', '1']);
    expect(newest.stdout).not.toMatch(/^0\s/m);
    expect(newest.stdout).toMatch(/^1\s+@s0/m);
    expect(newest.stdout).toMatch(/the newest 1 of 2 streams; --streams N or --streams all/);

    const ls = await run(['ls', suite.dir, '--json']);
    expect(ls.code, ls.stderr).toBe(0);
    const rows = (JSON.parse(ls.stdout) as { streams: Array<Record<string, unknown>> }).streams;
    expect(rows.filter((r) => r.kind === 'series')).toEqual([
      expect.objectContaining({
        path: 'migr',
        state: 'replicating',
        streams: 2,
        final: true,
        receivers: expect.objectContaining({ count: 1 }),
      }),
    ]);
    expect(rows.some((r) => String(r.path).includes('streams/'))).toBe(false);

    // --watch ends once the final stream is complete and every receiver has applied it.
    const watching = bucketpipe(['inspect', series, '--watch', '--interval', '200ms']);
    let seen = '';
    watching.child.stdout?.on('data', (text: string) => {
      seen += text;
    });
    await waitFor(() => (/not started/.test(seen) ? true : undefined), 20_000, 'the first refresh');
    const final = await run(['send', streamUrl(series, 1), '--chunk-size', '1MiB', '-q', '--', 'cat', suite.input]);
    expect(final.code, final.stderr).toBe(0);
    await new Promise((r) => setTimeout(r, 600));
    expect(watching.child.exitCode).toBeNull(); // the receiver has not applied it yet
    await seriesRecord('receiver', series, 'gcp-1', 'done', '1');
    const watched = await watching.done;
    expect(watched.code, watched.stderr).toBe(0);
    expect(watched.stdout).toMatch(/sender\s+aws-vm:4242: finished/);
    expect(watched.stdout.split('\n--- ').at(-1)).toMatch(/^receiver gcp-1\s+done; applied stream 1/m);

    const plain = await run(['inspect', streamUrl(series, 0), '--streams', '5']);
    expect(plain.code).toBe(2);
    expect(plain.stderr).toMatch(/--streams applies to a series/);
  });
});
