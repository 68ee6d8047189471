import { availableParallelism } from 'node:os';
import {
  assertChunkSize,
  CodecPool,
  DEFAULT_BUFFER_BYTES,
  DEFAULT_CHUNK_SIZE,
  DEFAULT_LEVEL,
  DEFAULT_STALE_AFTER_MS,
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
import { rateLimited, rateOption, rateOptionSpec } from '../rate-option.js';
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
  --rate RATE           pace the uploads to RATE of stored bytes, smoothly: 200MB/s, 50MiB/s,
                        1Gbit/s (default: as fast as the store takes them)
  --takeover            continue the stream at <stream-url> if its sender is gone (state aborted, or
                        a heartbeat older than --stale-after): the source is read again from its
                        start and checked chunk by chunk against the chunks already stored (it must
                        give the same bytes, e.g. zfs send of the same snapshot), and only the rest
                        is uploaded; use the original --chunk-size and --level. Refused while the
                        sender is live and for a complete stream. Without a stream there, starts one
  --stale-after D       with --takeover: how old the heartbeat of a sending stream must be before it
                        may be taken over (default ${DEFAULT_STALE_AFTER_MS / 1000}s; the sender beats every 10s)
  --no-fsync            (directory store) do not fsync chunks; faster, unsafe on power loss
  -q, --quiet           no progress line
  -h, --help

${storeOptionsHelp}

Sizes: 16MiB, 512M, 1GiB or bytes. Durations: 500ms, 2s, 1m.
example:
  bucketpipe send /mnt/transfer/pgdata -- zfs send -c tank/pgdata@migrate
  bucketpipe send /mnt/transfer/pgdata --takeover -- zfs send -c tank/pgdata@migrate   # after a crash
  zfs send tank/pgdata@migrate | bucketpipe send file:///mnt/transfer/pgdata
`;

const spec: OptionSpec = {
  'chunk-size': { type: 'string' },
  level: { type: 'string' },
  concurrency: { type: 'string' },
  buffer: { type: 'string' },
  threads: { type: 'string' },
  'manifest-interval': { type: 'string' },
  takeover: { type: 'boolean' },
  'stale-after': { type: 'string' },
  'no-fsync': { type: 'boolean' },
  quiet: { type: 'boolean', short: 'q' },
  ...rateOptionSpec,
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
  const rate = rateOption(values);
  const takeover = values.takeover === true;
  if (values['stale-after'] !== undefined && !takeover) throw new UsageError('--stale-after applies only with --takeover');
  const staleAfterMs = durationOption(values, 'stale-after', DEFAULT_STALE_AFTER_MS);

  const store = await openStreamStore(
    url,
    storeOpenOptions(values, { fsync: values['no-fsync'] !== true, concurrency: String(concurrency) }),
  );
  const source: ByteSource = parsed.command.length > 0 ? await commandSource(parsed.command) : stdinSource();
  const progress = new ProgressReporter({ quiet: values.quiet === true });
  const interrupt = interruptSignal();
  const codec = new CodecPool(threads);
  let phase = 'sending';
  try {
    const summary = await send({
      store: rateLimited(store, rate),
      source: source.bytes,
      sourceExit: source.exit,
      chunkSize,
      level,
      concurrency,
      bufferBytes,
      manifestIntervalMs,
      takeover,
      staleAfterMs,
      codec,
      signal: interrupt.signal,
      onProgress: (p) => {
        if (p.phase !== phase) {
          phase = p.phase;
          if (p.phase === 'verifying') {
            progress.message(
              `resuming stream ${p.streamId}: reading the source from its start and verifying it against the ${p.resumedFrom} chunks already stored`,
            );
          } else if (p.resumedFrom > 0) {
            progress.message(`the source matches the ${p.resumedFrom} chunks already stored; sending from chunk ${p.resumedFrom} on`);
          }
        }
        progress.update((seconds) =>
          p.phase === 'verifying'
            ? `send verifying chunk ${p.chunksRead} of ${p.resumedFrom} against the stored stream · ${formatBytes(p.rawBytesRead)} read · ${formatRate(p.rawBytesRead, seconds)}`
            : `send ${formatBytes(p.rawBytesRead)} read · ${formatRate(p.rawBytesRead, seconds)} · ${p.watermark} chunks stored · ${describeRatio(p.rawBytesStored, p.storedBytes).split(':')[0]} · ${p.uploadsInFlight} uploading`,
        );
      },
    });
    const resumed = summary.tookOver
      ? {
          resumedFrom: summary.resumedFrom,
          chunksVerified: summary.resumedFrom,
          chunksUploaded: summary.chunksUploaded,
          verifySeconds: Number(summary.verifySeconds.toFixed(3)),
          tookOver: {
            sender: summary.tookOver.sender.id,
            state: summary.tookOver.state,
            heartbeatAgeSeconds: Math.round(summary.tookOver.heartbeatAgeMs / 1000),
          },
        }
      : {};
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
      ...resumed,
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
