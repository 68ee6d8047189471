import { availableParallelism, hostname } from 'node:os';
import {
  CodecPool,
  checkReceivedPrefix,
  DEFAULT_BUFFER_BYTES,
  defaultMissingChunkPolicy,
  formatBytes,
  formatRate,
  receive,
  type Sink,
  UsageError,
} from '@bucketpipe/core';
import {
  durationOption,
  exactlyOnePositional,
  integerOption,
  type OptionSpec,
  parseCommandLine,
  sizeOption,
  stringOption,
} from '../args.js';
import { encryptionKeyOption, encryptionOptionHelp, encryptionOptionSpec } from '../encryption-option.js';
import type { Log } from '../log/index.js';
import { markStreamStarted } from '../main-thread-report.js';
import { metricsOptionSpec, metricsOptionsHelp, startMetrics } from '../metrics/index.js';
import { ProgressReporter } from '../progress.js';
import { rateLimited, rateOption, rateOptionSpec } from '../rate-option.js';
import { interruptSignal } from '../signals.js';
import { commandSink, fileSink, type OutputSink, stdoutSink } from '../sink.js';
import { defaultConcurrency, storeOpenOptions, storeOptionSpec, storeOptionsHelp } from '../store-options.js';
import { openStreamStore } from '../stores.js';

export const receiveHelp = `usage: bucketpipe receive <stream-url> [options] [-- command [args...]]

Follows the stream at <stream-url> — before, during or after the send — downloading ahead in
parallel, verifying every chunk (header, SHA-256) before any of its bytes is written, and writes
the stream strictly in order into the command's stdin, a file (--output), or stdout. Exits 0 only
when the whole stream matched its checksum and the command exited 0. On any failure the command is
killed before it can see end-of-input, so "zfs recv" never commits a partial stream.

Restarted after an interruption, the same command continues where it can:
  --output FILE, or stdout appended to a file (>> FILE): the bytes the file holds are first
      checked against the stream (each whole chunk's SHA-256 against the stored chunk's header;
      a file of another stream is refused, untouched), then the file is cut to those chunks and
      only the rest is downloaded. A partly written last chunk is received again.
  a command (zfs recv), a pipe or a terminal: the stream is received again from its first chunk,
      out of the store; the sender is not needed for that.

options:
  -o, --output FILE     write to FILE (created if absent, never truncated before it was verified)
                        and resume into it when it already holds the start of the stream
  --concurrency N       downloads in flight (default 16 from S3 and GCS, 8 from a directory)
  --buffer SIZE         memory for chunks downloaded ahead of the sink (default 512MiB)
  --threads N           verification/decompression threads (default: one per core, ${availableParallelism()} here)
  --poll-interval D     the longest wait between looks for new chunks while the sender is running
                        (default 1s); looks are timed for just after the sender's manifest writes
  --rate RATE           pace the downloads to RATE of stored bytes, smoothly: 200MB/s, 50MiB/s,
                        1Gbit/s (default: as fast as the store gives them)
  --receiver-id ID      name under which this receiver publishes its position (default: host name)
  --missing-chunk-timeout D
                        how long a chunk the manifest counts may stay unreadable (a copy still in
                        transit) before it counts as lost (default ${defaultMissingChunkPolicy.timeoutMs / 1000}s)
  --delete-consumed     delete the chunk objects the sink has taken, in batches while receiving and
                        the rest at the end, so that the bucket holds only what is not received yet
                        (with send --max-lag on the sender: a bounded amount). "Taken" means handed
                        to the sink: written to the file, or into the command's stdin pipe — not
                        committed by the command. The trade-off: NO REPLAY FROM THE STORE. If the
                        command (zfs recv) fails or the receive is interrupted, neither a restart
                        nor --output resume can get the deleted chunks back: send again. Chunks are
                        kept while another receiver of the stream (waiting or receiving) still
                        needs them; a receiver started later, and a relay reading this stream
                        (it has no cursor), are NOT protected. manifest.json and the cursors stay:
                        inspect and ls still work; verify reports the chunks as missing.
${encryptionOptionHelp}.
                        Required for an encrypted stream, refused for a plain one
${metricsOptionsHelp}
  -q, --quiet           no progress line
  -h, --help

${storeOptionsHelp}

example:
  bucketpipe receive /mnt/transfer/pgdata -- zfs recv -F tank/pgdata
  bucketpipe receive file:///mnt/transfer/pgdata --output stream.zfs
`;

const spec: OptionSpec = {
  concurrency: { type: 'string' },
  buffer: { type: 'string' },
  threads: { type: 'string' },
  'poll-interval': { type: 'string' },
  'receiver-id': { type: 'string' },
  'missing-chunk-timeout': { type: 'string' },
  output: { type: 'string', short: 'o' },
  'delete-consumed': { type: 'boolean' },
  quiet: { type: 'boolean', short: 'q' },
  ...rateOptionSpec,
  ...storeOptionSpec,
  ...metricsOptionSpec,
  ...encryptionOptionSpec,
};

export async function runReceive(argv: string[], log: Log): Promise<number> {
  const parsed = parseCommandLine(argv, spec, 'receive');
  const url = exactlyOnePositional(parsed, 'receive');
  const { values } = parsed;
  const concurrency = integerOption(values, 'concurrency', defaultConcurrency(url), 1, 256);
  const bufferBytes = sizeOption(values, 'buffer', DEFAULT_BUFFER_BYTES);
  const threads = integerOption(values, 'threads', availableParallelism(), 1, 256);
  const pollIntervalMs = durationOption(values, 'poll-interval', 1000);
  const rate = rateOption(values);
  const receiverId = stringOption(values, 'receiver-id') ?? defaultReceiverId();
  if (!/^[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}$/.test(receiverId)) {
    throw new UsageError(`--receiver-id ${JSON.stringify(receiverId)}: use letters, digits, '.', '_' and '-' only`);
  }

  const missingChunkTimeoutMs = durationOption(values, 'missing-chunk-timeout', defaultMissingChunkPolicy.timeoutMs);

  const outputPath = stringOption(values, 'output');
  if (outputPath !== undefined && parsed.command.length > 0) {
    throw new UsageError('--output and a sink command exclude each other: write to a file or into a command');
  }
  if (outputPath === '') throw new UsageError('--output needs a file name');
  const encryption = await encryptionKeyOption(values);

  const metrics = await startMetrics('receive', values, log);
  const store = await openStreamStore(url, storeOpenOptions(values, { concurrency: String(concurrency) }));
  const output: OutputSink | null = parsed.command.length > 0 ? null : outputPath !== undefined ? await fileSink(outputPath) : stdoutSink();
  const sink: Sink = output ?? (await commandSink(parsed.command, (command, line) => log.commandOutput(command, line)));
  const progress = new ProgressReporter(log, { quiet: values.quiet === true });
  if (encryption.warning) progress.warning(encryption.warning);
  const interrupt = interruptSignal();
  const codec = new CodecPool(threads);
  const receiveStore = rateLimited(metrics.store(store), rate);
  let resumed: Record<string, unknown> = {};
  try {
    const summary = await receive({
      store: receiveStore,
      sink: metrics.sink(sink),
      start: output?.existing
        ? async (manifest, signal, keys) => {
            const existing = output.existing;
            if (!existing) return null;
            progress.message(
              `${existing.description} holds ${formatBytes(existing.length)} already: verifying it against stream ${manifest.streamId} before receiving the rest`,
              'resume',
            );
            const verifyStarted = performance.now();
            const prefix = await checkReceivedPrefix({
              store: receiveStore,
              manifest,
              keys,
              output: existing,
              concurrency,
              signal,
              onProgress: (v) =>
                progress.update({
                  bytes: v.rawBytes,
                  unit: 'verified',
                  fields: { phase: 'verifying', chunksVerified: v.chunks, chunksToVerify: v.of, rawBytesVerified: v.rawBytes },
                  line: (head) => `receive verifying chunk ${v.chunks} of ${v.of} of ${existing.description} · ${head}`,
                }),
            });
            const verifySeconds = (performance.now() - verifyStarted) / 1000;
            await output.truncate(prefix.rawBytes);
            progress.message(
              `${existing.description} holds the first ${prefix.chunks} chunks (${formatBytes(prefix.rawBytes)}) of the stream, verified at ${formatRate(prefix.rawBytes, verifySeconds)}${prefix.discardBytes > 0 ? `; cut off the ${prefix.discardBytes} bytes after them (a chunk not completely written)` : ''}; receiving from chunk ${prefix.chunks} on`,
              'resume',
            );
            resumed = {
              resumedFrom: prefix.chunks,
              chunksVerified: prefix.chunks,
              rawBytesVerified: prefix.rawBytes,
              bytesDiscarded: prefix.discardBytes,
              verifySeconds: Number(verifySeconds.toFixed(3)),
            };
            return prefix;
          }
        : undefined,
      concurrency,
      bufferBytes,
      pollIntervalMs,
      receiverId,
      missingChunk: { ...defaultMissingChunkPolicy, timeoutMs: missingChunkTimeoutMs },
      encryptionKey: encryption.key,
      codec,
      deleteConsumed: values['delete-consumed'] === true,
      signal: interrupt.signal,
      onWaiting: (what) => {
        metrics.waiting(what);
        progress.waiting(what);
      },
      onWarning: (message) => progress.warning(message),
      onProgress: (p) => {
        metrics.receive(p);
        markStreamStarted(p.rawBytesWritten - p.rawBytesResumed);
        progress.update({
          bytes: p.rawBytesWritten,
          unit: 'written',
          expected: p.expectedRawBytes === null ? null : { bytes: p.expectedRawBytes, exact: p.state === 'complete' },
          fields: {
            phase: 'receiving',
            rawBytes: p.rawBytesWritten,
            chunksWritten: p.chunksWritten,
            watermark: p.watermark,
            state: p.state,
          },
          line: (head) =>
            `receive ${head} · chunk ${p.chunksWritten}/${p.watermark}${p.state === 'sending' ? '+' : ''} · ${p.downloadsInFlight} downloading`,
        });
      },
    });
    progress.summary({
      command: 'receive',
      stream: store.description,
      streamId: summary.streamId,
      state: 'complete',
      sink: sink.description,
      chunks: summary.chunks,
      rawBytes: summary.rawBytes,
      seconds: Number(summary.seconds.toFixed(3)),
      MBps: Number(((summary.rawBytes - summary.rawBytesResumed) / 1e6 / summary.seconds).toFixed(1)),
      digest: summary.digest,
      encrypted: encryption.key !== undefined,
      ...resumed,
      ...(values['delete-consumed'] === true ? { chunksDeleted: summary.chunksDeleted } : {}),
      requests: store.counts,
    });
    return 0;
  } finally {
    interrupt.dispose();
    await metrics.close();
    await codec.close();
    await store.close();
  }
}

function defaultReceiverId(): string {
  return (
    hostname()
      .replace(/[^A-Za-z0-9._-]/g, '-')
      .replace(/^[.]+/, '') || 'receiver'
  );
}
