import type { Manifest } from '@bucketpipe/core';
import type { SeriesStatus, StreamRecord } from '@bucketpipe/replication';
import { describe, expect, it } from 'vitest';
import { parseShownStreams, renderSeries, SeriesRate, seriesJson } from './inspect-series.js';

const T0 = Date.parse('2026-12-04T12:00:00.000Z');
const iso = (ms: number) => new Date(ms).toISOString();
const ref = (n: number) => ({ name: `bp-${n}`, guid: String(100 + n), creation: T0 / 1000 - (40 - n) * 60 });

function manifest(patch: Partial<Manifest>): Manifest {
  return {
    format: 'bucketpipe.manifest',
    version: 1,
    streamId: 'a1b2c3d4-0000-4000-8000-000000000000',
    createdAt: iso(T0),
    updatedAt: iso(T0),
    chunkSize: 1 << 20,
    codec: 'zstd',
    level: 1,
    state: 'complete',
    watermark: 4,
    rawBytes: 4 << 20,
    storedBytes: 1 << 20,
    sender: { id: 'src:1', host: 'src', pid: 1, startedAt: iso(T0), heartbeatAt: iso(T0) },
    ...patch,
  };
}

function record(seq: number, final = false): StreamRecord {
  return {
    format: 'bucketpipe.series-stream',
    version: 1,
    seriesId: 's',
    seq,
    createdAt: iso(T0),
    dataset: 'tank/pg',
    from: seq === 0 ? null : ref(seq - 1),
    to: ref(seq),
    sendFlags: [],
    final,
  };
}

function status(patch: Partial<SeriesStatus> = {}): SeriesStatus {
  return {
    series: {
      format: 'bucketpipe.series',
      version: 1,
      seriesId: 'series-uuid',
      createdAt: iso(T0 - 3_600_000),
      updatedAt: iso(T0 - 90_000),
      dataset: 'tank/pg',
      sender: { id: 'src:1', host: 'src', pid: 1, startedAt: iso(T0 - 3_600_000), heartbeatAt: iso(T0 - 90_000) },
      streams: 40,
      sourceNewest: ref(39),
    },
    sender: { state: 'stale', heartbeatAgeMs: 90_000 },
    totals: {
      streams: 40,
      rawBytes: 40 << 20,
      storedBytes: 10 << 20,
      chunks: 160,
      byState: { complete: 38, sending: 0, aborted: 1, 'not started': 1 },
    },
    streams: [
      { seq: 38, record: record(38), state: 'aborted', manifest: manifest({ state: 'aborted', abortReason: 'zfs send exited 1' }) },
      { seq: 39, record: record(39), state: 'not started', manifest: null },
    ],
    receivers: [
      {
        record: {
          format: 'bucketpipe.series-receiver',
          version: 1,
          seriesId: 'series-uuid',
          receiverId: 'gcp-1',
          host: 'gcp-vm',
          dataset: 'tank/pg',
          state: 'receiving',
          receiving: 38,
          applied: { seq: 37, snapshot: 'bp-37', guid: '137', creation: ref(37).creation, at: iso(T0) },
          updatedAt: iso(T0 - 2000),
        },
        lagSeconds: 180,
        cursor: {
          format: 'bucketpipe.receiver',
          version: 1,
          receiverId: 'gcp-1',
          streamId: 'x',
          host: 'gcp-vm',
          pid: 2,
          startedAt: iso(T0),
          updatedAt: iso(T0),
          position: 2,
          rawBytes: 2 << 20,
          state: 'receiving',
        },
        receivingManifest: manifest({ state: 'sending', watermark: 3 }),
      },
    ],
    finished: false,
    ...patch,
  };
}

describe('inspect on a series', () => {
  it('names a stale sender, an aborted stream with its reason, a stream not started, where a receiver stands inside a stream and its lag', () => {
    const text = renderSeries('s3://b/migr', status(), T0);
    expect(text).toMatch(/^sender\s+src:1, heartbeat 1m30s ago: STALE/m);
    expect(text).toMatch(/^source\s+newest snapshot @bp-39 \(created 1m00s ago\)$/m);
    expect(text).toMatch(/^streams\s+40: 38 complete, 1 aborted, 1 not started$/m);
    expect(text).toMatch(/^38\s+@bp-37\s+→\s+@bp-38\s+4\.00 MiB\s+1\.00 MiB\s+aborted: zfs send exited 1$/m);
    expect(text).toMatch(/^39\s+@bp-38\s+→\s+@bp-39\s+-\s+-\s+not started$/m);
    expect(text).toMatch(
      /^receiver gcp-1\s+receiving stream 38, chunk 2\/3\+ \(2\.00 MiB\); applied stream 37 \(@bp-37\), replication lag 3m00s/m,
    );
    expect(text).toMatch(/the newest 2 of 40 streams/);
  });

  it('--json: the receiver with its lag and its position in the stream it receives; the streams shown from where they start', () => {
    const json = seriesJson('s3://b/migr', status());
    expect(json.shown).toEqual({ from: 38, count: 2 });
    expect(json.streams[1]).toMatchObject({ seq: 39, state: 'not started', streamId: null, rawBytes: 0 });
    expect(json.receivers[0]).toMatchObject({ receiverId: 'gcp-1', lagSeconds: 180, stream: { seq: 38, position: 2, watermark: 3 } });
  });

  it('--streams takes a count or all', () => {
    expect(parseShownStreams(undefined)).toBe(20);
    expect(parseShownStreams('5')).toBe(5);
    expect(parseShownStreams('ALL')).toBe('all');
    expect(() => parseShownStreams('-1')).toThrow(/--streams "-1"/);
  });

  it('--watch: the series rate over all streams, done when the sender finished', () => {
    const rate = new SeriesRate(10_000);
    rate.record(T0, 10_000_000);
    expect(rate.describe(status())).toBe('measuring…');
    rate.record(T0 + 2000, 30_000_000);
    expect(rate.describe(status())).toMatch(/^10\.0 MB\/s raw/);
    expect(rate.describe(status({ sender: { state: 'finished', heartbeatAgeMs: 0 } }))).toBe('done');
  });
});
