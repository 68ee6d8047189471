import { SinkFailedError } from '@bucketpipe/core';
import { describe, expect, it } from 'vitest';
import { HumanLog } from './human-log.js';

function terminal(isTTY: boolean, columns?: number) {
  const writes: string[] = [];
  return { writes, out: { isTTY, columns, write: (text: string) => void writes.push(text) } };
}

describe('HumanLog', () => {
  it('writes the lines bucketpipe always wrote', () => {
    const { writes, out } = terminal(false);
    const log = new HumanLog(out);
    log.info('waiting', 'waiting for the sender (chunk 3 is not stored yet)');
    log.warn('warning', 'cannot publish the cursor');
    log.failure(new SinkFailedError('BP_SINK_FAILED', 'sink command "zfs recv" exited with code 1 before the stream ended'));
    log.bug(new Error('boom'));
    expect(writes.slice(0, 3)).toEqual([
      'bucketpipe: waiting for the sender (chunk 3 is not stored yet)\n',
      'bucketpipe: warning: cannot publish the cursor\n',
      'bucketpipe: error: sink command "zfs recv" exited with code 1 before the stream ended [BP_SINK_FAILED]\n',
    ]);
    expect(writes[3]).toMatch(/^bucketpipe: internal error \(this is a bug; please report it with the lines below\)\nError: boom\n\s+at /);
  });

  it("passes a command's stderr line on as the command wrote it, after clearing the status line", () => {
    const { writes, out } = terminal(true);
    const log = new HumanLog(out);
    log.status('send 1.00 MiB');
    log.commandOutput('zfs send tank/x@a', 'warning: cannot send tank/x@a: dataset is busy');
    expect(writes).toEqual(['\rsend 1.00 MiB', `\r${' '.repeat(13)}\r`, 'warning: cannot send tank/x@a: dataset is busy\n']);
  });

  it('draws no status line unless stderr is a terminal', () => {
    const { writes, out } = terminal(false);
    const log = new HumanLog(out);
    log.status('send 1.00 MiB read');
    expect(log.live).toBe(false);
    expect(writes).toEqual([]);
  });

  it('on a terminal, clears the status line before any other line', () => {
    const { writes, out } = terminal(true);
    const log = new HumanLog(out);
    expect(log.live).toBe(true);
    log.status('send 1.00 MiB');
    log.info('summary', 'send complete');
    expect(writes).toEqual(['\rsend 1.00 MiB', `\r${' '.repeat(13)}\r`, 'bucketpipe: send complete\n']);
  });
});
