import type { SourceSnapshot } from './plan-send.js';
import type { SnapshotRef } from './snapshot-ref.js';

export interface PrunePlanInput {
  /** The source's snapshots, oldest first. */
  source: readonly SourceSnapshot[];
  /**
   * The newest snapshot every registered receiver holds: the to-snapshot of the lowest stream
   * they have all applied. Null when there is no receiver yet, or one has applied nothing: then
   * nothing is released.
   */
  commonToAll: SnapshotRef | null;
  /** Snapshots the series uses now (the newest stream's from and to): never released. */
  inUse: readonly SnapshotRef[];
  /** How many of bucketpipe's own snapshots to keep, newest first, whatever the receivers have. */
  keep: number;
  isOwnSnapshot: (name: string) => boolean;
}

export interface PrunePlan {
  /** bucketpipe's own snapshots that every receiver is past: release the hold, then destroy. */
  destroy: SourceSnapshot[];
  /** The operator's snapshots the series held and no longer needs: release the hold, keep the snapshot. */
  release: SourceSnapshot[];
}

/**
 * Which source snapshots the series can let go of: only those older than the newest snapshot all
 * receivers hold — never that one, which the next increment starts from — and, of bucketpipe's
 * own, not the `keep` newest. Snapshots the operator made are never destroyed, only released.
 */
export function planPrune(input: PrunePlanInput): PrunePlan {
  const none: PrunePlan = { destroy: [], release: [] };
  if (input.commonToAll === null) return none;
  const commonGuid = input.commonToAll.guid;
  const common = input.source.find((s) => s.guid === commonGuid);
  if (common === undefined) return none;
  const own = input.source.filter((s) => input.isOwnSnapshot(s.name));
  const kept = new Set(own.slice(Math.max(0, own.length - input.keep)).map((s) => s.guid));
  const inUse = new Set(input.inUse.map((s) => s.guid));
  const older = input.source.filter((s) => s.createtxg < common.createtxg && !inUse.has(s.guid));
  return {
    destroy: older.filter((s) => input.isOwnSnapshot(s.name) && !kept.has(s.guid)),
    release: older.filter((s) => !input.isOwnSnapshot(s.name)),
  };
}
