import { availableParallelism } from 'node:os';
import {
  assertChunkSize,
  CodecPool,
  DEFAULT_BUFFER_BYTES,
  DEFAULT_CHUNK_SIZE,
  DEFAULT_LEVEL,
  formatBytes,
  formatRate,
  MAX_CHUNK_SIZE,
  MAX_LEVEL,
  MIN_CHUNK_SIZE,
  MIN_LEVEL,
  send,
  UsageError,
} from '@bucketpipe/core';
import { durationOption, exactlyOnePositional, integerOption, type OptionSpec, parseCommandLine, sizeOption } from '../args.js';
import { describeRatio, ProgressReporter } from '../progress.js';
import { interruptSignal } from '../signals.js';
import { type ByteSource, commandSource, stdinSource } from '../source.js';
import { storeOpenOptions, storeOptionSpec, storeOptionsHelp } from '../store-options.js';
import { openStreamStore } from '../stores.js';

export const sendHelp = `usage: bucketpipe send <stream-url> [options] [-- command [args...]]

Reads a byte stream from the command's stdout (or from stdin when no command is given), cuts it
into chunks, compresses and checksums them on all cores, and uploads them in parallel to
<stream-url>, keeping the stream's manifest current so receivers can follow in real time.

  <stream-url>          s3://bucket/prefix, gs://bucket/prefix, or a directory (/srv/bp/pgdata or
                        file:///srv/bp/pgdata) whose parent must exist

options:
  --chunk-size SIZE     raw bytes per chunk object (default 16MiB; ${formatBytes(MIN_CHUNK_SIZE)} to ${formatBytes(MAX_CHUNK_SIZE)})
  --level N             zstd level, ${MIN_LEVEL}..${MAX_LEVEL} (default ${DEFAULT_LEVEL}: fast, about 2.7x on database files)
  --concurrency N       uploads in flight (default 8)
  --buffer SIZE         memory for chunks being read, compressed and uploaded, like mbuffer -m
                        (default 512MiB; at least two chunks)
  --threads N           compression threads (default: one per core, ${availableParallelism()} here)
  --manifest-interval D how often the manifest is rewritten with progress (default 1s)
  --no-fsync            (directory store) do not fsync chunks; faster, unsafe on power loss
  -q, --quiet           no progress line
  -h, --help

${storeOptionsHelp}

Sizes: 16MiB, 512M, 1GiB or bytes. Durations: 500ms, 2s, 1m.
example:
  bucketpipe send /mnt/transfer/pgdata -- zfs send -c tank/pgdata@migrate
  zfs send tank/pgdata@migrate | bucketpipe send file:///mnt/transfer/pgdata
`;

const spec: OptionSpec = {
  'chunk-size': { type: 'string' },
  level: { type: 'string' },
  concurrency: { type: 'string' },
  buffer: { type: 'string' },
  threads: { type: 'string' },
  'manifest-interval': { type: 'string' },
  'no-fsync': { type: 'boolean' },
  quiet: { type: 'boolean', short: 'q' },
  ...storeOptionSpec,
};

export async function runSend(argv: string[]): Promise<number> {
  const parsed = parseCommandLine(argv, spec, 'send');
  const url = exactlyOnePositional(parsed, 'send');
  const { values } = parsed;
  const chunkSize = sizeOption(values, 'chunk-size', DEFAULT_CHUNK_SIZE, 0);
  try {
    assertChunkSize(chunkSize);
  } catch {
    throw new UsageError(
      `--chunk-size ${String(values['chunk-size'])}: must be from ${formatBytes(MIN_CHUNK_SIZE)} to ${formatBytes(MAX_CHUNK_SIZE)}`,
    );
  }
  const level = integerOption(values, 'level', DEFAULT_LEVEL, MIN_LEVEL, MAX_LEVEL);
  const concurrency = integerOption(values, 'concurrency', 8, 1, 256);
  const bufferBytes = sizeOption(values, 'buffer', DEFAULT_BUFFER_BYTES);
  const threads = integerOption(values, 'threads', availableParallelism(), 1, 256);
  const manifestIntervalMs = durationOption(values, 'manifest-interval', 1000);

  const store = await openStreamStore(
    url,
    storeOpenOptions(values, { fsync: values['no-fsync'] !== true, concurrency: String(concurrency) }),
  );
  const source: ByteSource = parsed.command.length > 0 ? await commandSource(parsed.command) : stdinSource();
  const progress = new ProgressReporter({ quiet: values.quiet === true });
  const interrupt = interruptSignal();
  const codec = new CodecPool(threads);
  try {
    const summary = await send({
      store,
      source: source.bytes,
      sourceExit: source.exit,
      chunkSize,
      level,
      concurrency,
      bufferBytes,
      manifestIntervalMs,
      codec,
      signal: interrupt.signal,
      onProgress: (p) =>
        progress.update(
          (seconds) =>
            `send ${formatBytes(p.rawBytesRead)} read · ${formatRate(p.rawBytesRead, seconds)} · ${p.watermark} chunks stored · ${describeRatio(p.rawBytesStored, p.storedBytes).split(':')[0]} · ${p.uploadsInFlight} uploading`,
        ),
    });
    progress.summary({
      command: 'send',
      stream: store.description,
      streamId: summary.streamId,
      state: 'complete',
      chunks: summary.chunks,
      rawBytes: summary.rawBytes,
      storedBytes: summary.storedBytes,
      ratio: summary.storedBytes > 0 ? Number((summary.rawBytes / summary.storedBytes).toFixed(3)) : null,
      seconds: Number(summary.seconds.toFixed(3)),
      MBps: Number((summary.rawBytes / 1e6 / summary.seconds).toFixed(1)),
      digest: summary.digest,
      requests: store.counts,
    });
    return 0;
  } catch (error) {
    source.stop();
    throw error;
  } finally {
    interrupt.dispose();
    await codec.close();
    await store.close();
  }
}
