import { describe, expect, it } from 'vitest';
import { planPrune } from './plan-prune.js';
import { snap } from './test-records.js';

const isOwnSnapshot = (name: string) => name.startsWith('bp-');
const [s1, s2, s3, s4, s5] = [snap('bp-1', 1), snap('manual', 2), snap('bp-3', 3), snap('bp-4', 4), snap('bp-5', 5)];
const source = [s1, s2, s3, s4, s5].map((s) => s as NonNullable<typeof s>);
const names = (list: { name: string }[]) => list.map((s) => s.name);

describe('planPrune', () => {
  it('lets go only of snapshots older than the one every receiver holds, and destroys only its own', () => {
    const plan = planPrune({ source, commonToAll: source[3] ?? null, inUse: [], keep: 0, isOwnSnapshot });
    expect(names(plan.destroy)).toEqual(['bp-1', 'bp-3']);
    expect(names(plan.release)).toEqual(['manual']);
  });

  it('keeps the --keep newest of its own', () => {
    const plan = planPrune({ source, commonToAll: source[4] ?? null, inUse: [], keep: 3, isOwnSnapshot });
    expect(names(plan.destroy)).toEqual(['bp-1']);
  });

  it('lets go of nothing while a receiver has applied nothing, and never of what is in use', () => {
    expect(planPrune({ source, commonToAll: null, inUse: [], keep: 0, isOwnSnapshot })).toEqual({ destroy: [], release: [] });
    const plan = planPrune({ source, commonToAll: source[4] ?? null, inUse: [source[2] as never], keep: 0, isOwnSnapshot });
    expect(names(plan.destroy)).toEqual(['bp-1', 'bp-4']);
  });
});
