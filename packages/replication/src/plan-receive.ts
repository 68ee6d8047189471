import type { StreamRecord } from './stream-record.js';

/** A snapshot of the target dataset, as `zfs list -t snapshot` gives it. */
export interface TargetSnapshot {
  /** The part after '@'. */
  snapshot: string;
  guid: string;
  createtxg: bigint;
}

export interface ReceivePlanInput {
  /** The target dataset, for messages. */
  dataset: string;
  /** The target's snapshots oldest first, or null when the dataset does not exist. */
  target: readonly TargetSnapshot[] | null;
  /**
   * Consecutive stream records of the series, ending with its newest stream: `streams[i].seq` is
   * `streams[0].seq + i`. The caller starts the window where it expects the target to stand and
   * widens it when the plan asks for older streams.
   */
  streams: readonly StreamRecord[];
  /** The operator passed `zfs recv -F`: a target changed since its newest snapshot may be rolled back. */
  rollback: boolean;
}

export type ReceivePlan =
  /** Receive this stream next. */
  | { kind: 'apply'; stream: StreamRecord; after: StreamRecord | null }
  /** The target holds the newest stream's snapshot; the series goes on. */
  | { kind: 'wait'; applied: StreamRecord | null }
  /** The target holds the final stream's snapshot. */
  | { kind: 'done'; applied: StreamRecord }
  /** The window does not reach back to where the target stands: read the streams before `before`. */
  | { kind: 'widen'; before: number }
  | { kind: 'conflict'; code: ReceiveConflictCode; message: string };

export type ReceiveConflictCode =
  | 'BP_TARGET_NOT_EMPTY' // the dataset exists but holds no snapshot the series knows, and no snapshot at all
  | 'BP_TARGET_FOREIGN' // holds snapshots, none of them the series'
  | 'BP_TARGET_DIVERGED' // holds snapshots after the newest common one that the series does not have
  | 'BP_SERIES_BROKEN'; // the series' streams do not chain (from of one ≠ to of the one before)

/**
 * Where the target stands in the series and what to do next — a pure function of the target's
 * snapshots and the series' stream records (the shape of zrepl's replication planning). The
 * target's snapshots are the truth: a stream whose to-snapshot is on the target is never applied
 * again, and a target that does not fit the series is refused, naming the snapshots in the way.
 */
export function planReceive(input: ReceivePlanInput): ReceivePlan {
  const { streams, target, dataset } = input;
  const first = streams[0];
  if (first === undefined) return { kind: 'wait', applied: null };
  const broken = brokenChain(streams);
  if (broken) return broken;

  if (target === null) {
    return first.seq === 0 ? { kind: 'apply', stream: first, after: null } : { kind: 'widen', before: first.seq };
  }
  const byGuid = new Map(target.map((s) => [s.guid, s]));
  let common: { stream: StreamRecord; index: number } | null = null;
  for (let i = streams.length - 1; i >= 0 && common === null; i--) {
    const stream = streams[i] as StreamRecord;
    if (byGuid.has(stream.to.guid)) common = { stream, index: i };
  }

  if (common === null) {
    if (first.seq !== 0) return { kind: 'widen', before: first.seq };
    if (target.length === 0) {
      if (input.rollback) return { kind: 'apply', stream: first, after: null };
      return {
        kind: 'conflict',
        code: 'BP_TARGET_NOT_EMPTY',
        message: `target ${dataset} already exists and has no snapshot (an interrupted full receive can leave one behind): the full stream would overwrite it; if it holds nothing you need, destroy it (zfs destroy ${dataset}) or pass --recv-flags=-F, or give a dataset that does not exist yet`,
      };
    }
    const newest = target[target.length - 1] as TargetSnapshot;
    return {
      kind: 'conflict',
      code: 'BP_TARGET_FOREIGN',
      message: `target ${dataset} holds none of the series' snapshots (it has ${target.length}, newest @${newest.snapshot}): it is another dataset; give a dataset that does not exist yet, or destroy this one`,
    };
  }

  const held = byGuid.get(common.stream.to.guid) as TargetSnapshot;
  const extra = target.filter((s) => s.createtxg > held.createtxg);
  if (extra.length > 0) {
    return {
      kind: 'conflict',
      code: 'BP_TARGET_DIVERGED',
      message: `target ${dataset} has diverged from the series: after @${held.snapshot} (stream ${common.stream.seq}, the newest snapshot both have) it holds ${listNames(extra)}, which the series does not; destroy ${extra.length === 1 ? 'that snapshot' : 'those snapshots'} on the target to go on`,
    };
  }
  if (common.stream.final) return { kind: 'done', applied: common.stream };
  const next = streams[common.index + 1];
  return next ? { kind: 'apply', stream: next, after: common.stream } : { kind: 'wait', applied: common.stream };
}

function brokenChain(streams: readonly StreamRecord[]): ReceivePlan | null {
  for (let i = 1; i < streams.length; i++) {
    const before = streams[i - 1] as StreamRecord;
    const stream = streams[i] as StreamRecord;
    if (stream.seq !== before.seq + 1 || stream.from?.guid !== before.to.guid || before.final) {
      return {
        kind: 'conflict',
        code: 'BP_SERIES_BROKEN',
        message: `stream ${stream.seq} of the series does not follow stream ${before.seq} (it starts from ${stream.from ? `@${stream.from.name}` : 'nothing'}, stream ${before.seq} ends at @${before.to.name}${before.final ? ' and is final' : ''}): the series was altered; it cannot be applied`,
      };
    }
  }
  return null;
}

function listNames(snapshots: readonly TargetSnapshot[]): string {
  const names = snapshots.slice(0, 5).map((s) => `@${s.snapshot}`);
  return snapshots.length > 5 ? `${names.join(', ')} and ${snapshots.length - 5} more` : names.join(', ');
}
