import type { SnapshotRef } from './snapshot-ref.js';
import type { StreamRecord } from './stream-record.js';

/** A snapshot of the source dataset, as `zfs list -t snapshot` gives it. */
export interface SourceSnapshot extends SnapshotRef {
  createtxg: bigint;
}

export interface SendPlanInput {
  /** The source dataset, for messages. */
  dataset: string;
  /** The source's snapshots, oldest first. */
  source: readonly SourceSnapshot[];
  /** The newest stream the series has, or null before the first. */
  last: StreamRecord | null;
  /** Whether `last` is completely sent (its manifest says complete). */
  lastComplete: boolean;
  /** The operator has asked for the cut-over. */
  cutover: boolean;
  /** Now and the schedule, in milliseconds. */
  now: number;
  everyMs: number;
  /** Bytes written to the dataset since its newest snapshot; undefined where the pool cannot tell. */
  writtenSinceNewest: number | undefined;
  /** Names bucketpipe gives its own snapshots (`isBucketpipeSnapshotName`). */
  isOwnSnapshot: (name: string) => boolean;
  /** The operator's snapshot to send first (`--snapshot`); without it the daemon takes one. */
  initialSnapshot?: string;
}

export type SendPlan =
  /** Continue the newest stream: it is not completely sent (a restart mid-stream). */
  | { kind: 'resume'; stream: StreamRecord }
  /** Send `to` (full when `from` is null) as the next stream; take a new snapshot when `to` is 'take'. */
  | { kind: 'send'; from: SourceSnapshot | null; to: SourceSnapshot | 'take'; final: boolean }
  /** Nothing to do before `until` (ms), unless a cut-over is asked for. */
  | { kind: 'wait'; until: number; skipped?: 'nothing written' }
  /** The series is final and its last stream sent. */
  | { kind: 'done' }
  | { kind: 'conflict'; code: SendConflictCode; message: string };

export type SendConflictCode =
  | 'BP_SOURCE_SNAPSHOT_GONE' // a snapshot the series needs was destroyed on the source
  | 'BP_SOURCE_SNAPSHOT_REPLACED'; // a snapshot of that name exists but is another one (other GUID)

/**
 * The sender daemon's next step — a pure function of the series' newest stream and the source's
 * snapshots. The first stream is sent full; every later one is the increment from the newest
 * stream's to-snapshot, which must still be on the source (the daemon holds it so that it is).
 */
export function planSend(input: SendPlanInput): SendPlan {
  const { last, source, dataset } = input;
  if (last === null) {
    if (input.initialSnapshot === undefined) return { kind: 'send', from: null, to: 'take', final: input.cutover };
    const given = source.find((s) => s.name === input.initialSnapshot);
    if (given) return { kind: 'send', from: null, to: given, final: input.cutover };
    return {
      kind: 'conflict',
      code: 'BP_SOURCE_SNAPSHOT_GONE',
      message: `there is no snapshot ${dataset}@${input.initialSnapshot} (--snapshot): name one that \`zfs list -t snapshot ${dataset}\` shows, or leave --snapshot out to let bucketpipe take one`,
    };
  }
  const missing = (ref: SnapshotRef, role: string): SendPlan | null => {
    const found = source.find((s) => s.name === ref.name);
    if (found === undefined || found.guid !== ref.guid) {
      const byGuid = source.find((s) => s.guid === ref.guid);
      if (byGuid) return null; // renamed: the GUID is what counts
      return {
        kind: 'conflict',
        code: found ? 'BP_SOURCE_SNAPSHOT_REPLACED' : 'BP_SOURCE_SNAPSHOT_GONE',
        message: found
          ? `${dataset}@${ref.name}, the ${role} of stream ${last.seq}, is not the snapshot the series recorded (GUID ${found.guid}, not ${ref.guid}): it was destroyed and made again; the series cannot go on from it — start a new series at a new URL`
          : `${dataset}@${ref.name}, the ${role} of stream ${last.seq}, is gone from the source (destroyed by hand?): the series cannot go on without it — start a new series at a new URL`,
      };
    }
    return null;
  };

  if (!input.lastComplete) {
    return missing(last.to, 'to-snapshot') ?? (last.from && missing(last.from, 'from-snapshot')) ?? { kind: 'resume', stream: last };
  }
  if (last.final) return { kind: 'done' };
  const gone = missing(last.to, 'to-snapshot');
  if (gone) return gone;
  const base = source.find((s) => s.guid === last.to.guid) as SourceSnapshot;

  // A snapshot of ours newer than the base that the series does not know: taken by a sender that
  // died before it recorded the stream. Sending it (rather than taking one more) keeps it from
  // lingering unsent and unpruned.
  const pending = source.filter((s) => s.createtxg > base.createtxg && input.isOwnSnapshot(s.name)).at(-1);
  if (input.cutover) return { kind: 'send', from: base, to: 'take', final: true };
  if (pending) return { kind: 'send', from: base, to: pending, final: false };
  const due = last.to.creation * 1000 + input.everyMs;
  if (input.now < due) return { kind: 'wait', until: due };
  if (input.writtenSinceNewest === 0 && source.at(-1)?.guid === base.guid) {
    return { kind: 'wait', until: input.now + input.everyMs, skipped: 'nothing written' };
  }
  return { kind: 'send', from: base, to: 'take', final: false };
}
