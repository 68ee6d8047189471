import { spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { isProcessGone, isProcessIdentity, ownProcessIdentity } from './process-identity.js';

describe('process identity', () => {
  const own = ownProcessIdentity();

  it('names this process by boot and start time', () => {
    expect(own).toBeDefined();
    expect(isProcessIdentity(own)).toBe(true);
    expect(isProcessGone(process.pid, own)).toBe(false);
  });

  it('tells a process gone when its pid is free, reused by another start, or from an earlier boot', () => {
    const exited = spawnSync('true');
    expect(isProcessGone(exited.pid as number, own)).toBe(true);
    if (!own) return;
    expect(isProcessGone(process.pid, { ...own, startTime: String(Number(own.startTime) + 1) })).toBe(true);
    expect(isProcessGone(process.pid, { ...own, bootId: '00000000-0000-0000-0000-000000000000' })).toBe(true);
  });

  it('never calls a process gone without knowing which one it was', () => {
    expect(isProcessGone(process.pid, undefined)).toBe(false);
    expect(isProcessGone(999_999_999, undefined)).toBe(false);
    expect(isProcessIdentity({ bootId: 'x', startTime: '12a' })).toBe(false);
  });
});
