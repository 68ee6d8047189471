import { describe, expect, it } from 'vitest';
import { planSend, type SendPlanInput } from './plan-send.js';
import { chain, snap } from './test-records.js';

const a = snap('bp-a', 1);
const b = snap('bp-b', 2);
const isOwnSnapshot = (name: string) => name.startsWith('bp-');
const every = 60_000;
const base = (over: Partial<SendPlanInput>): SendPlanInput => ({
  dataset: 'tank/src',
  source: [a, b],
  last: null,
  lastComplete: true,
  cutover: false,
  now: b.creation * 1000 + 1000,
  everyMs: every,
  writtenSinceNewest: undefined,
  isOwnSnapshot,
  ...over,
});
const streams = chain([a, b]);
const last = streams[1] ?? streams[0];

describe('planSend', () => {
  it('starts with a full stream of a new snapshot, or of the one the operator names', () => {
    expect(planSend(base({}))).toEqual({ kind: 'send', from: null, to: 'take', final: false });
    expect(planSend(base({ initialSnapshot: 'bp-a' }))).toEqual({ kind: 'send', from: null, to: a, final: false });
    expect(planSend(base({ initialSnapshot: 'nope' }))).toMatchObject({ kind: 'conflict', code: 'BP_SOURCE_SNAPSHOT_GONE' });
  });

  it('resumes a stream that is not completely sent', () => {
    expect(planSend(base({ last, lastComplete: false }))).toEqual({ kind: 'resume', stream: last });
  });

  it('waits for the schedule, then sends the increment from the newest stream snapshot', () => {
    expect(planSend(base({ last }))).toEqual({ kind: 'wait', until: b.creation * 1000 + every });
    expect(planSend(base({ last, now: b.creation * 1000 + every }))).toEqual({ kind: 'send', from: b, to: 'take', final: false });
  });

  it('skips a cycle when the pool says nothing was written since the newest snapshot', () => {
    const now = b.creation * 1000 + every;
    expect(planSend(base({ last, now, writtenSinceNewest: 0 }))).toMatchObject({ kind: 'wait', skipped: 'nothing written' });
    expect(planSend(base({ last, now, writtenSinceNewest: 4096 }))).toMatchObject({ kind: 'send' });
  });

  it('cuts over at once, and is done after the final stream', () => {
    expect(planSend(base({ last, cutover: true }))).toEqual({ kind: 'send', from: b, to: 'take', final: true });
    expect(planSend(base({ last: chain([a, b], true)[1] ?? null, cutover: true }))).toEqual({ kind: 'done' });
  });

  it('sends a snapshot of its own that a dead sender took but did not record', () => {
    const c = snap('bp-c', 3);
    expect(planSend(base({ last, source: [a, b, snap('manual', 3), c] }))).toEqual({ kind: 'send', from: b, to: c, final: false });
  });

  it('refuses to go on when the base snapshot is gone or was made again, but follows a rename', () => {
    expect(planSend(base({ last, source: [a] }))).toMatchObject({ kind: 'conflict', code: 'BP_SOURCE_SNAPSHOT_GONE' });
    expect(planSend(base({ last, source: [a, { ...b, guid: '5' }] }))).toMatchObject({
      kind: 'conflict',
      code: 'BP_SOURCE_SNAPSHOT_REPLACED',
    });
    expect(planSend(base({ last, lastComplete: false, source: [a, { ...b, name: 'renamed' }] }))).toMatchObject({ kind: 'resume' });
  });
});
