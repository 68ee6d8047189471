import { describe, expect, it } from 'vitest';
import { planReceive, type TargetSnapshot } from './plan-receive.js';
import { chain, snap } from './test-records.js';

const s = [snap('bp-a', 1), snap('bp-b', 2), snap('bp-c', 3), snap('bp-d', 4)];
const onTarget = (...names: string[]): TargetSnapshot[] =>
  names.map((name, i) => {
    const source = s.find((x) => x.name === name);
    return { snapshot: name, guid: source?.guid ?? `9${i}`, createtxg: BigInt(100 + i) };
  });
const plan = (target: TargetSnapshot[] | null, streams = chain(s), rollback = false) =>
  planReceive({ dataset: 'pool/dst', target, streams, rollback });

describe('planReceive', () => {
  it('applies the full stream to a target that does not exist', () => {
    expect(plan(null)).toMatchObject({ kind: 'apply', stream: { seq: 0 }, after: null });
  });

  it('waits while the series has no stream yet', () => {
    expect(plan(null, [])).toEqual({ kind: 'wait', applied: null });
  });

  it('applies the stream after the newest one whose snapshot the target holds, never one it holds', () => {
    expect(plan(onTarget('bp-a'))).toMatchObject({ kind: 'apply', stream: { seq: 1 }, after: { seq: 0 } });
    expect(plan(onTarget('bp-a', 'bp-b', 'bp-c'))).toMatchObject({ kind: 'apply', stream: { seq: 3 }, after: { seq: 2 } });
  });

  it('finds where the target stands when older snapshots were pruned there', () => {
    expect(plan(onTarget('bp-b'))).toMatchObject({ kind: 'apply', stream: { seq: 2 } });
  });

  it('waits at the newest stream, and is done at the final one', () => {
    expect(plan(onTarget('bp-a', 'bp-b', 'bp-c', 'bp-d'))).toMatchObject({ kind: 'wait', applied: { seq: 3 } });
    expect(plan(onTarget('bp-c', 'bp-d'), chain(s, true))).toMatchObject({ kind: 'done', applied: { seq: 3 } });
  });

  it('asks for older streams when the window does not reach the target', () => {
    const window = chain(s).slice(2);
    expect(plan(onTarget('bp-a'), window)).toEqual({ kind: 'widen', before: 2 });
    expect(plan(null, window)).toEqual({ kind: 'widen', before: 2 });
    expect(plan(onTarget('bp-c'), window)).toMatchObject({ kind: 'apply', stream: { seq: 3 } });
  });

  it('refuses a target of another dataset, naming it', () => {
    const result = plan(onTarget('daily-1', 'daily-2'));
    expect(result).toMatchObject({ kind: 'conflict', code: 'BP_TARGET_FOREIGN' });
    expect(result.kind === 'conflict' && result.message).toMatch(
      /pool\/dst holds none of the series' snapshots \(it has 2, newest @daily-2\)/,
    );
  });

  it('refuses an existing target without snapshots unless -F allows overwriting it', () => {
    expect(plan([])).toMatchObject({ kind: 'conflict', code: 'BP_TARGET_NOT_EMPTY', message: expect.stringContaining('zfs destroy') });
    expect(plan([], chain(s), true)).toMatchObject({ kind: 'apply', stream: { seq: 0 } });
  });

  it('refuses a target with snapshots after the common one, listing them, even with -F', () => {
    for (const rollback of [false, true]) {
      const result = plan(onTarget('bp-a', 'bp-b', 'mine'), chain(s), rollback);
      expect(result).toMatchObject({ kind: 'conflict', code: 'BP_TARGET_DIVERGED' });
      expect(result.kind === 'conflict' && result.message).toMatch(/after @bp-b \(stream 1, .*\) it holds @mine/);
    }
  });

  it('refuses a series whose streams do not chain', () => {
    const streams = chain(s);
    const third = streams[2];
    if (third?.from) third.from = { ...third.from, guid: '77' };
    expect(plan(onTarget('bp-a'), streams)).toMatchObject({ kind: 'conflict', code: 'BP_SERIES_BROKEN' });
  });
});
