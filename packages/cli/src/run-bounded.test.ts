import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runBounded } from './run-bounded.js';

const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

describe('runBounded', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'bucketpipe-bounded-'));
  });
  afterAll(() => rm(dir, { recursive: true, force: true }));

  it('runs a command to its end with its exit status and output', async () => {
    expect(await runBounded(['sh', '-c', 'echo out; echo err >&2; exit 3'], 5000)).toEqual({
      outcome: 'exited',
      code: 3,
      signal: null,
      stdout: 'out\n',
      stderr: 'err\n',
    });
  });

  it('kills a command that does not end in time, and answers at once', async () => {
    const pidFile = join(dir, 'pid');
    const started = performance.now();
    const run = await runBounded(['sh', '-c', `echo $$ > ${pidFile}; exec sleep 30`], 300);
    expect(run).toEqual({ outcome: 'timed-out' });
    expect(performance.now() - started).toBeLessThan(2000);
    const pid = Number(await readFile(pidFile, 'utf8'));
    for (let i = 0; i < 40 && alive(pid); i++) await sleep(25);
    expect(alive(pid)).toBe(false);
  });

  it('says when a command cannot be started', async () => {
    expect(await runBounded([join(dir, 'no-such-command')], 1000)).toEqual({ outcome: 'not-started', reason: 'command not found' });
    expect(await runBounded([], 1000)).toEqual({ outcome: 'not-started', reason: 'no command' });
  });
});
