import type { Readable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';

/** Where a source or sink command's stderr goes: one call per whole line, without its newline, naming the command. */
export type CommandOutput = (command: string, line: string) => void;

/** A line longer than this is handed on in pieces of this size (a runaway command must not grow our memory). */
const MAX_LINE = 64 * 1024;

/**
 * Reads a command's stderr and hands on whole lines. A command that shares our stderr can write
 * half a line (GNU tools write "cat: " and the message separately) just as we write ours, and the
 * two interleave into a line neither wrote; through here every line is written by us, whole, in
 * our log format, and the live status line is cleared first. Returns the command's last words, for
 * a one-line error: `: <its last lines, as one>`. Its stderr may close a moment after it exits:
 * that waits for it, briefly, so that no last word is lost.
 */
export function readCommandStderr(stderr: Readable, command: string, output: CommandOutput): () => Promise<string> {
  let pending = '';
  let tail = '';
  const emit = (line: string) => {
    output(command, line);
    tail = `${tail}${line}\n`.slice(-4096);
  };
  stderr.setEncoding('utf8');
  stderr.on('data', (text: string) => {
    pending += text;
    for (let end = pending.indexOf('\n'); end !== -1; end = pending.indexOf('\n')) {
      emit(pending.slice(0, end));
      pending = pending.slice(end + 1);
    }
    while (pending.length > MAX_LINE) {
      emit(pending.slice(0, MAX_LINE));
      pending = pending.slice(MAX_LINE);
    }
  });
  stderr.on('error', () => {});
  const closed = new Promise<void>((resolve) =>
    stderr.once('close', () => {
      if (pending !== '') emit(pending);
      pending = '';
      resolve();
    }),
  );
  return async () => {
    await Promise.race([closed, sleep(1000)]);
    // zfs wraps its messages ("…has been modified\nsince most recent snapshot"): the last lines, as one.
    const words = tail.trim().split('\n').slice(-3).join(' ').replace(/\s+/g, ' ').slice(-400);
    return words ? `: ${words}` : '';
  };
}
