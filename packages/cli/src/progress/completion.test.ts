import { describe, expect, it } from 'vitest';
import { completion } from './completion.js';

const MB = 1_000_000;

describe('completion', () => {
  it('percent (rounded down) and the ETA at the given rate', () => {
    expect(completion(42 * MB, { bytes: 100 * MB, exact: true }, 2 * MB)).toEqual({ percent: 42, etaSeconds: 29, beyondEstimate: false });
    expect(completion(999, { bytes: 1000, exact: false }, 1)).toEqual({ percent: 99, etaSeconds: 1, beyondEstimate: false });
    expect(completion(0, { bytes: 1000, exact: false }, 100)).toEqual({ percent: 0, etaSeconds: 10, beyondEstimate: false });
  });

  it('no ETA without a rate, or at a standstill', () => {
    expect(completion(10, { bytes: 100, exact: true }, null).etaSeconds).toBeNull();
    expect(completion(10, { bytes: 100, exact: true }, 0).etaSeconds).toBeNull();
  });

  it('an exact total reached is 100% with nothing left', () => {
    expect(completion(100, { bytes: 100, exact: true }, 5)).toEqual({ percent: 100, etaSeconds: 0, beyondEstimate: false });
    expect(completion(0, { bytes: 0, exact: true }, null)).toEqual({ percent: 100, etaSeconds: 0, beyondEstimate: false });
  });

  it('an estimate reached stays at 99%, overshot also loses its ETA: only the end of the stream is 100%', () => {
    expect(completion(100, { bytes: 100, exact: false }, 5)).toEqual({ percent: 99, etaSeconds: 0, beyondEstimate: false });
    expect(completion(101, { bytes: 100, exact: false }, 5)).toEqual({ percent: 99, etaSeconds: null, beyondEstimate: true });
    expect(completion(250 * MB, { bytes: 100 * MB, exact: false }, 5)).toEqual({ percent: 99, etaSeconds: null, beyondEstimate: true });
  });
});
