import type { SourceSnapshot } from './plan-send.js';
import type { StreamRecord } from './stream-record.js';

/** A source snapshot named `name`, with txg and guid derived from `n` so tests can read them. */
export function snap(name: string, n: number): SourceSnapshot {
  return { name, guid: String(1000 + n), creation: 1_700_000_000 + n * 60, createtxg: BigInt(n * 10) };
}

/** A chain of stream records over `snaps`: stream 0 full to snaps[0], stream i from snaps[i-1] to snaps[i]. */
export function chain(snaps: readonly SourceSnapshot[], finalLast = false): StreamRecord[] {
  return snaps.map((to, seq) => ({
    format: 'bucketpipe.series-stream',
    version: 1,
    seriesId: 'series-1',
    seq,
    createdAt: '2026-12-04T00:00:00Z',
    dataset: 'tank/src',
    from: seq === 0 ? null : ref(snaps[seq - 1] as SourceSnapshot),
    to: ref(to),
    sendFlags: [],
    final: finalLast && seq === snaps.length - 1,
  }));
}

function ref(s: SourceSnapshot) {
  return { name: s.name, guid: s.guid, creation: s.creation };
}
