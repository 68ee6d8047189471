import { ExitCode, StoreError, UsageError } from '@bucketpipe/core';
import { describe, expect, it } from 'vitest';
import { JsonLog } from './json-log.js';

function captured(command?: string) {
  const writes: string[] = [];
  const log = new JsonLog(command, { write: (text: string) => void writes.push(text) });
  const lines = () =>
    writes
      .join('')
      .split('\n')
      .filter((l) => l !== '');
  return { log, lines, events: () => lines().map((l) => JSON.parse(l) as Record<string, unknown>) };
}

describe('JsonLog', () => {
  it('writes one JSON object per line: level label, ISO time, pid, hostname, command, event, fields, msg', () => {
    const { log, lines, events } = captured('send');
    log.info('waiting', 'waiting for the sender', { waitingFor: 'the sender' });
    log.warn('warning', 'the cursor cannot be published');
    expect(lines()).toHaveLength(2);
    const [info, warn] = events();
    expect(info).toMatchObject({
      level: 'info',
      pid: process.pid,
      command: 'send',
      event: 'waiting',
      waitingFor: 'the sender',
      msg: 'waiting for the sender',
    });
    expect(typeof info?.hostname).toBe('string');
    expect(info?.time).toMatch(/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/);
    expect(warn).toMatchObject({ level: 'warn', event: 'warning', msg: 'the cursor cannot be published' });
  });

  it('an error is one line with its code and exit status; the message is the human one without the code', () => {
    const { log, lines, events } = captured('receive');
    log.failure(new StoreError('auth', 'access denied to s3://b/p: check the credentials\nsecond line would break lines'));
    log.failure(new UsageError('--concurrency 0: must be a whole number from 1 to 256'));
    expect(lines()).toHaveLength(2);
    expect(events()[1]).toMatchObject({
      level: 'error',
      event: 'error',
      code: 'BP_USAGE',
      exitCode: ExitCode.usage,
      msg: '--concurrency 0: must be a whole number from 1 to 256',
    });
    expect(events()[0]).toMatchObject({ level: 'error', event: 'error', exitCode: ExitCode.store });
    expect(events()[0]?.code).toMatch(/^BP_/);
  });

  it("a source or sink command's stderr line is an event naming the command, its words as msg", () => {
    const { log, events } = captured('receive');
    log.commandOutput('zfs recv -F tank/x', 'cannot receive: {"not": "json of ours"}');
    expect(events()).toEqual([
      expect.objectContaining({
        level: 'info',
        command: 'receive',
        event: 'command-output',
        from: 'zfs recv -F tank/x',
        msg: 'cannot receive: {"not": "json of ours"}',
      }),
    ]);
  });

  it('a bug is one line too, with its stack as a field', () => {
    const { log, lines, events } = captured();
    log.bug(new TypeError('x is not a function'));
    expect(lines()).toHaveLength(1);
    const [bug] = events();
    expect(bug).toMatchObject({ level: 'error', event: 'error', code: 'BP_INTERNAL', exitCode: ExitCode.bug });
    expect(bug?.msg).toMatch(/^internal error \(this is a bug.*\): x is not a function$/);
    expect(bug?.stack).toMatch(/^TypeError: x is not a function\n\s+at /);
    expect(bug).not.toHaveProperty('command'); // none known (an unknown command)
  });

  it("a summary's own command field does not appear twice", () => {
    const { log, lines } = captured('send');
    log.info('summary', 'send complete', { command: 'send', chunks: 3 });
    expect(lines()[0]?.match(/"command":/g)).toHaveLength(1);
  });
});
