import { availableParallelism, hostname } from 'node:os';
import {
  CodecPool,
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
import { ProgressReporter } from '../progress.js';
import { rateLimited, rateOption, rateOptionSpec } from '../rate-option.js';
import { interruptSignal } from '../signals.js';
import { commandSink, stdoutSink } from '../sink.js';
import { storeOpenOptions, storeOptionSpec, storeOptionsHelp } from '../store-options.js';
import { openStreamStore } from '../stores.js';

export const receiveHelp = `usage: bucketpipe receive <stream-url> [options] [-- command [args...]]

Follows the stream at <stream-url> — before, during or after the send — downloading ahead in
parallel, verifying every chunk (header, SHA-256) before any of its bytes is written, and writes
the stream strictly in order into the command's stdin (or to stdout when no command is given).
Exits 0 only when the whole stream matched its checksum and the command exited 0. On any failure
the command is killed before it can see end-of-input, so "zfs recv" never commits a partial stream.

options:
  --concurrency N       downloads in flight (default 8)
  --buffer SIZE         memory for chunks downloaded ahead of the sink (default 512MiB)
  --threads N           verification/decompression threads (default: one per core, ${availableParallelism()} here)
  --poll-interval D     how often to look for new chunks while the sender is running (default 1s)
  --rate RATE           pace the downloads to RATE of stored bytes, smoothly: 200MB/s, 50MiB/s,
                        1Gbit/s (default: as fast as the store gives them)
  --receiver-id ID      name under which this receiver publishes its position (default: host name)
  --missing-chunk-timeout D
                        how long a chunk the manifest counts may stay unreadable (a copy still in
                        transit) before it counts as lost (default ${defaultMissingChunkPolicy.timeoutMs / 1000}s)
  -q, --quiet           no progress line
  -h, --help

${storeOptionsHelp}

example:
  bucketpipe receive /mnt/transfer/pgdata -- zfs recv -F tank/pgdata
  bucketpipe receive file:///mnt/transfer/pgdata > stream.zfs
`;

const spec: OptionSpec = {
  concurrency: { type: 'string' },
  buffer: { type: 'string' },
  threads: { type: 'string' },
  'poll-interval': { type: 'string' },
  'receiver-id': { type: 'string' },
  'missing-chunk-timeout': { type: 'string' },
  quiet: { type: 'boolean', short: 'q' },
  ...rateOptionSpec,
  ...storeOptionSpec,
};

export async function runReceive(argv: string[]): Promise<number> {
  const parsed = parseCommandLine(argv, spec, 'receive');
  const url = exactlyOnePositional(parsed, 'receive');
  const { values } = parsed;
  const concurrency = integerOption(values, 'concurrency', 8, 1, 256);
  const bufferBytes = sizeOption(values, 'buffer', DEFAULT_BUFFER_BYTES);
  const threads = integerOption(values, 'threads', availableParallelism(), 1, 256);
  const pollIntervalMs = durationOption(values, 'poll-interval', 1000);
  const rate = rateOption(values);
  const receiverId = stringOption(values, 'receiver-id') ?? defaultReceiverId();
  if (!/^[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}$/.test(receiverId)) {
    throw new UsageError(`--receiver-id ${JSON.stringify(receiverId)}: use letters, digits, '.', '_' and '-' only`);
  }

  const missingChunkTimeoutMs = durationOption(values, 'missing-chunk-timeout', defaultMissingChunkPolicy.timeoutMs);

  const store = await openStreamStore(url, storeOpenOptions(values, { concurrency: String(concurrency) }));
  const sink: Sink = parsed.command.length > 0 ? await commandSink(parsed.command) : stdoutSink();
  const progress = new ProgressReporter({ quiet: values.quiet === true });
  const interrupt = interruptSignal();
  const codec = new CodecPool(threads);
  try {
    const summary = await receive({
      store: rateLimited(store, rate),
      sink,
      concurrency,
      bufferBytes,
      pollIntervalMs,
      receiverId,
      missingChunk: { ...defaultMissingChunkPolicy, timeoutMs: missingChunkTimeoutMs },
      codec,
      signal: interrupt.signal,
      onWaiting: (what) => progress.waiting(what),
      onWarning: (message) => progress.message(`warning: ${message}`),
      onProgress: (p) =>
        progress.update(
          (seconds) =>
            `receive ${formatBytes(p.rawBytesWritten)} written · ${formatRate(p.rawBytesWritten, seconds)} · chunk ${p.chunksWritten}/${p.watermark}${p.state === 'sending' ? '+' : ''} · ${p.downloadsInFlight} downloading`,
        ),
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
      MBps: Number((summary.rawBytes / 1e6 / summary.seconds).toFixed(1)),
      digest: summary.digest,
      requests: store.counts,
    });
    return 0;
  } finally {
    interrupt.dispose();
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
