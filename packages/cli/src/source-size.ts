import { basename } from 'node:path';
import { formatBytes } from '@bucketpipe/core';
import { describeCommand, describeExit } from './command-line.js';
import type { Log } from './log/index.js';
import { runBounded } from './run-bounded.js';

export const SIZE_ESTIMATE_TIMEOUT_MS = 30_000;

/**
 * The dry run that estimates a `zfs send …` source: `zfs send -nP` with the same arguments
 * (OpenZFS prints `size\t<bytes>`). Null for any other source command.
 */
export function zfsSendDryRun(command: readonly string[]): string[] | null {
  const [program, subcommand, ...args] = command;
  if (program === undefined || basename(program) !== 'zfs' || subcommand !== 'send') return null;
  return [program, 'send', '-nP', ...args];
}

/** The last `size <bytes>` line of `zfs send -nP` output; null when there is none, or it is not a count above 0. */
export function parseZfsSendSize(output: string): number | null {
  let size: number | null = null;
  for (const line of output.split(/\r?\n/)) {
    const match = /^\s*size\s+(\S+)\s*$/.exec(line);
    if (!match) continue;
    const bytes = /^\d+$/.test(match[1] as string) ? Number(match[1]) : Number.NaN;
    size = Number.isSafeInteger(bytes) && bytes > 0 ? bytes : null;
  }
  return size;
}

/**
 * For a `zfs send …` source, the size its dry run estimates, said once on the log; undefined for
 * any other source, and when the dry run gives none (a zfs without -n/-P, such as zfs-fuse, a
 * failure, or no answer within `timeoutMs`): the send then goes on without a size.
 */
export async function estimateSourceSize(
  command: readonly string[],
  log: Log,
  timeoutMs = SIZE_ESTIMATE_TIMEOUT_MS,
): Promise<number | undefined> {
  const dryRun = zfsSendDryRun(command);
  if (!dryRun) return undefined;
  const described = describeCommand(dryRun);
  const run = await runBounded(dryRun, timeoutMs);
  let why: string;
  if (run.outcome === 'timed-out') why = `no answer within ${timeoutMs / 1000}s`;
  else if (run.outcome === 'not-started') why = run.reason;
  else if (run.code !== 0) why = `it ${describeExit(run.code, run.signal)}${firstLine(run.stderr || run.stdout)}`;
  else {
    const bytes = parseZfsSendSize(`${run.stdout}\n${run.stderr}`);
    if (bytes !== null) {
      log.info('size', `"${described}" estimates the stream at ${formatBytes(bytes)} (${bytes} bytes)`, {
        expectedRawBytes: bytes,
        estimatedBy: 'zfs send -nP',
      });
      return bytes;
    }
    why = 'its output has no "size" line';
  }
  log.info('size', `no size estimate from "${described}" (${why}): no percent or ETA; send --size SIZE gives one`, {
    estimatedBy: null,
  });
  return undefined;
}

function firstLine(text: string): string {
  const line = text.trim().split('\n')[0]?.trim() ?? '';
  return line === '' ? '' : `: ${line.length > 200 ? `${line.slice(0, 200)}…` : line}`;
}
