import { spawn } from 'node:child_process';
import { PassThrough } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { readCommandStderr } from './command-stderr.js';

function collect(): { lines: Array<[string, string]>; output: (command: string, line: string) => void } {
  const lines: Array<[string, string]> = [];
  return { lines, output: (command, line) => void lines.push([command, line]) };
}

describe('readCommandStderr', () => {
  it('hands on whole lines however the command split its writes, and the last unterminated one at close', async () => {
    const stderr = new PassThrough();
    const { lines, output } = collect();
    const said = readCommandStderr(stderr, 'cat /x', output);
    stderr.write('cat: ');
    expect(lines).toEqual([]);
    stderr.write('write error: Broken pipe\nsecond');
    stderr.write(' line\nno newline at the end');
    stderr.end();
    expect(await said()).toBe(': cat: write error: Broken pipe second line no newline at the end');
    expect(lines).toEqual([
      ['cat /x', 'cat: write error: Broken pipe'],
      ['cat /x', 'second line'],
      ['cat /x', 'no newline at the end'],
    ]);
  });

  it('joins the last three lines into the last words, and a command that said nothing has none', async () => {
    const wordy = new PassThrough();
    const said = readCommandStderr(wordy, 'zfs recv', () => {});
    wordy.end('one\ncannot receive incremental stream: destination tank/x has been modified\nsince most recent snapshot\n');
    expect(await said()).toBe(': one cannot receive incremental stream: destination tank/x has been modified since most recent snapshot');
    const silent = new PassThrough();
    const nothing = readCommandStderr(silent, 'zfs recv', () => {});
    silent.end();
    expect(await nothing()).toBe('');
  });

  it('cuts a runaway line into bounded pieces instead of holding it', async () => {
    const stderr = new PassThrough();
    const { lines, output } = collect();
    readCommandStderr(stderr, 'noisy', output);
    stderr.write('x'.repeat(200 * 1024));
    expect(lines.map(([, line]) => line.length)).toEqual([64 * 1024, 64 * 1024, 64 * 1024]);
    stderr.end();
  });

  it("keeps a real command's two-part writes together (the interleaving a shared stderr allowed)", async () => {
    // printf writes "cat: " and the rest separately, as GNU cat's error() does.
    const child = spawn('sh', ['-c', 'printf "cat: " >&2; sleep 0.05; printf "write error: Broken pipe\\n" >&2'], {
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    const { lines, output } = collect();
    const said = readCommandStderr(child.stderr, 'cat', output);
    await new Promise((resolve) => child.once('exit', resolve));
    expect(await said()).toBe(': cat: write error: Broken pipe');
    expect(lines).toEqual([['cat', 'cat: write error: Broken pipe']]);
  });
});
