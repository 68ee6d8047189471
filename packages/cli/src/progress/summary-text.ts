import { formatBytes } from '@bucketpipe/core';
import type { LogFields } from '../log/index.js';
import { formatDuration } from './progress-text.js';

/**
 * A command's summary as one sentence: the closing line of the human format, and the `msg` of the
 * JSON summary event (whose fields carry the numbers themselves, digest and request counts included).
 */
export function describeSummary(fields: LogFields): string {
  const command = typeof fields.command === 'string' ? fields.command : 'bucketpipe';
  const describe = describers[command];
  return describe ? describe(fields) : `${command} done`;
}

const num = (value: unknown): number => (typeof value === 'number' ? value : 0);
const bytes = (value: unknown): string => formatBytes(num(value));
const plural = (count: unknown, word: string): string => `${num(count)} ${word}${num(count) === 1 ? '' : 's'}`;

/** "in 2.1s (122.0 MB/s)", "in 1h07m (…)". */
function timing(f: LogFields): string {
  const seconds = num(f.seconds);
  return `in ${seconds < 60 ? `${seconds.toFixed(1)}s` : formatDuration(seconds)}${f.MBps === undefined ? '' : ` (${num(f.MBps).toFixed(1)} MB/s)`}`;
}

/** "stream 7 (@bp-20261204T101500Z)" */
function finalText(f: LogFields): string {
  const final = f.final as { seq?: number; snapshot?: string } | undefined;
  return final ? `stream ${final.seq} (@${final.snapshot})` : 'no final stream';
}

const digest = (f: LogFields): string => (typeof f.digest === 'string' ? `; digest ${f.digest}` : '');

const describers: Record<string, (f: LogFields) => string> = {
  'replicate send': (f) =>
    `replicate send done: series final at ${finalText(f)}, ${plural(f.streamsSent, 'stream')} sent by this run ${timing(f)}`,
  'replicate receive': (f) =>
    `replicate receive done: ${finalText(f)} applied, ${plural(f.streamsApplied, 'stream')} by this run ${timing(f)}`,
  'replicate cutover': (f) =>
    f.final === undefined
      ? `replicate cutover requested at ${String(f.requestedAt)}`
      : `replicate cutover complete: ${finalText(f)} on ${plural(Array.isArray(f.receivers) ? f.receivers.length : 0, 'receiver')} ${timing(f)} from the request`,
  send: (f) => {
    const ratio = typeof f.ratio === 'number' ? ` (${f.ratio.toFixed(2)}x)` : '';
    const resumed =
      f.resumedFrom === undefined
        ? ''
        : `, ${num(f.resumedFrom)} of them verified against the source${num(f.chunksReused) > 0 ? `, ${num(f.chunksReused)} stored beyond them kept` : ''} and ${num(f.chunksUploaded)} uploaded`;
    return `send ${String(f.state)}: ${bytes(f.rawBytes)} ${timing(f)}, ${plural(f.chunks, 'chunk')}${resumed}, stored ${bytes(f.storedBytes)}${ratio}${digest(f)}`;
  },
  receive: (f) => {
    const resumed = f.resumedFrom === undefined ? '' : `, resumed at chunk ${num(f.resumedFrom)}`;
    const deleted = f.chunksDeleted === undefined ? '' : `, ${num(f.chunksDeleted)} deleted from the store`;
    return `receive ${String(f.state)}: ${bytes(f.rawBytes)} into ${String(f.sink)} ${timing(f)}, ${plural(f.chunks, 'chunk')}${resumed}${deleted}${digest(f)}`;
  },
  relay: (f) =>
    f.seriesId !== undefined
      ? `relay complete: series of ${plural(f.streams, 'stream')} (${num(f.streamsRelayed)} relayed by this run), ${plural(f.chunksCopied, 'chunk')} copied (${bytes(f.storedBytesCopied)} stored) ${timing(f)}, ${String(f.from)} to ${String(f.to)}`
      : `relay ${String(f.state)}: ${num(f.chunksCopied)} of ${plural(f.chunks, 'chunk')} copied (${bytes(f.storedBytesCopied)} stored) ${timing(f)}, ${String(f.from)} to ${String(f.to)}`,
  verify: (f) =>
    `verify ${String(f.verdict).toUpperCase()}: ${plural(f.chunks, 'chunk')}, ${bytes(f.rawBytes)} raw ${timing(f)}, ${plural(f.problems, 'problem')}${digest(f)}`,
  rm: (f) => `rm: ${f.dryRun === true ? 'would delete' : 'deleted'} ${plural(f.objects, 'object')} (${bytes(f.bytes)}) ${timing(f)}`,
  ls: (f) => `ls: ${plural(f.streams, 'stream')} at ${String(f.location)}`,
};
