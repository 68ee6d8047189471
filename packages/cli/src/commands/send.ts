import { availableParallelism } from 'node:os';
import {
  type ChunkVersion,
  CodecPool,
  DEFAULT_LEVEL,
  DEFAULT_STALE_AFTER_MS,
  defaultSenderBuffer,
  formatBytes,
  LATEST_CHUNK_VERSION,
  MAX_CHUNK_SIZE,
  MAX_LEVEL,
  MIN_CHUNK_SIZE,
  MIN_LEVEL,
  parseByteSize,
  type SendOptions,
  send,
  UsageError,
} from '@bucketpipe/core';
import { StreamEndCheck } from '@bucketpipe/zfs';
import {
  chunkSizeOption,
  durationOption,
  exactlyOnePositional,
  integerOption,
  type OptionSpec,
  type ParsedCommandLine,
  parseCommandLine,
  sizeOption,
} from '../args.js';
import { encryptionKeyOption, encryptionOptionHelp, encryptionOptionSpec } from '../encryption-option.js';
import type { Log } from '../log/index.js';
import { markStreamStarted } from '../main-thread-report.js';
import { metricsOptionSpec, metricsOptionsHelp, startMetrics } from '../metrics/index.js';
import { describeRatio, ProgressReporter } from '../progress.js';
import { rateLimited, rateOption, rateOptionSpec } from '../rate-option.js';
import { interruptSignal } from '../signals.js';
import { type ByteSource, commandSource, stdinSource } from '../source.js';
import { estimateSourceSize } from '../source-size.js';
import { defaultConcurrency, storeOpenOptions, storeOptionSpec, storeOptionsHelp } from '../store-options.js';
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
  --concurrency N       uploads in flight (default 16 to S3 and GCS, 8 to a directory)
  --chunk-version N     chunk format to write (default ${LATEST_CHUNK_VERSION}); 1 for receivers, relays and verify
                        of bucketpipe before format 2, which refuse version 2 chunks ("upgrade bucketpipe")
  --buffer SIZE         memory for chunks being read, compressed and uploaded, like mbuffer -m
                        (default 512MiB, more with many cores: enough for every thread and
                        upload to be busy, up to 1.5GiB; at least two chunks)
  --threads N           compression threads (default: one per core, ${availableParallelism()} here)
  --manifest-interval D how often the manifest is rewritten with progress (default 1s)
  --rate RATE           pace the uploads to RATE of stored bytes, smoothly: 200MB/s, 50MiB/s,
                        1Gbit/s (default: as fast as the store takes them)
  --takeover            continue the stream at <stream-url> if its sender is gone (state aborted, a
                        heartbeat older than --stale-after, or a sender of this host whose process
                        is gone): the source is read again from its start and checked chunk by chunk
                        against the chunks already stored (it must give the same bytes, e.g. zfs
                        send of the same snapshot), and only the rest is uploaded; use the original
                        --chunk-size and --level. Refused while the sender is live. A complete
                        stream: the whole source is checked, nothing written, exit 0. Without a
                        stream there, starts one
  --stale-after D       with --takeover: how old the heartbeat of a sending stream must be before it
                        may be taken over (default ${DEFAULT_STALE_AFTER_MS / 1000}s; the sender beats every 10s)
  --max-lag N|SIZE      lag-aware backpressure: stop reading and uploading while the next chunk would
                        be N chunks (64) or SIZE of chunks (2GiB) beyond the position of the slowest
                        receiver of the stream, so the bucket holds a bounded window beyond it (chunks
                        being read, compressed and uploaded count). Receivers count from the cursor
                        they publish (about once a second); one that has not moved for 60s while the
                        sender waits for it is ignored until it moves. With no receiver registered,
                        the sender holds at N chunks for --max-lag-wait, then goes on unbounded (with
                        a warning) until a receiver registers. A relay is not a receiver
  --max-lag-wait D      with --max-lag: how long to hold for a first receiver (default 10s; 0: not)
  --no-fsync            (directory store) do not fsync chunks; faster, unsafe on power loss
${encryptionOptionHelp}.
                        A --takeover must use the stream's key
  --size SIZE           about how long the stream is (1.2TiB), for percent and ETA here and, through
                        the manifest (expectedRawBytes), at receivers and inspect --watch; an
                        estimate, not a limit. Without it, a "zfs send …" source is first asked
                        with "zfs send -nP …" (same arguments; at most 30s); other sources: unknown
${metricsOptionsHelp}
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
  'chunk-version': { type: 'string' },
  concurrency: { type: 'string' },
  buffer: { type: 'string' },
  threads: { type: 'string' },
  'manifest-interval': { type: 'string' },
  takeover: { type: 'boolean' },
  'stale-after': { type: 'string' },
  'max-lag': { type: 'string' },
  'max-lag-wait': { type: 'string' },
  'no-fsync': { type: 'boolean' },
  size: { type: 'string' },
  quiet: { type: 'boolean', short: 'q' },
  ...rateOptionSpec,
  ...storeOptionSpec,
  ...metricsOptionSpec,
  ...encryptionOptionSpec,
};

export async function runSend(argv: string[], log: Log): Promise<number> {
  const parsed = parseCommandLine(argv, spec, 'send');
  const url = exactlyOnePositional(parsed, 'send');
  const { values } = parsed;
  const chunkSize = chunkSizeOption(values);
  const level = integerOption(values, 'level', DEFAULT_LEVEL, MIN_LEVEL, MAX_LEVEL);
  const chunkVersion = integerOption(values, 'chunk-version', LATEST_CHUNK_VERSION, 1, LATEST_CHUNK_VERSION) as ChunkVersion;
  const concurrency = integerOption(values, 'concurrency', defaultConcurrency(url), 1, 256);
  const threads = integerOption(values, 'threads', availableParallelism(), 1, 256);
  const bufferBytes = sizeOption(values, 'buffer', defaultSenderBuffer(chunkSize, concurrency, threads));
  const manifestIntervalMs = durationOption(values, 'manifest-interval', 1000);
  const rate = rateOption(values);
  const takeover = values.takeover === true;
  if (values['stale-after'] !== undefined && !takeover) throw new UsageError('--stale-after applies only with --takeover');
  const staleAfterMs = durationOption(values, 'stale-after', DEFAULT_STALE_AFTER_MS);
  const maxLag = maxLagOption(values, chunkSize);
  const encryption = await encryptionKeyOption(values);
  const size = values.size === undefined ? undefined : sizeOption(values, 'size', 0);

  const metrics = await startMetrics('send', values, log);
  const store = await openStreamStore(
    url,
    storeOpenOptions(values, { fsync: values['no-fsync'] !== true, concurrency: String(concurrency) }),
  );
  const expectedRawBytes = size ?? (await estimateSourceSize(parsed.command, log));
  const expected = expectedRawBytes === undefined ? null : { bytes: expectedRawBytes, exact: false };
  const source: ByteSource =
    parsed.command.length > 0 ? await commandSource(parsed.command, (command, line) => log.commandOutput(command, line)) : stdinSource();
  const progress = new ProgressReporter(log, { quiet: values.quiet === true });
  if (encryption.warning) progress.warning(encryption.warning);
  const interrupt = interruptSignal();
  const codec = new CodecPool(threads);
  let phase = 'sending';
  try {
    const summary = await send({
      store: rateLimited(metrics.store(store), rate),
      // A ZFS send stream must end with its END record to count as complete: a cut pipe is not an end.
      source: new StreamEndCheck(source.bytes, { description: source.description, exit: source.exit }),
      sourceExit: source.exit,
      chunkSize,
      level,
      chunkVersion,
      concurrency,
      bufferBytes,
      manifestIntervalMs,
      takeover,
      staleAfterMs,
      expectedRawBytes,
      lag: maxLag === undefined ? undefined : lagLimit(maxLag, values, progress),
      encryptionKey: encryption.key,
      codec,
      signal: interrupt.signal,
      onProgress: (p) => {
        metrics.send(p);
        markStreamStarted(p.rawBytesRead);
        if (p.phase !== phase) {
          phase = p.phase;
          if (p.phase === 'verifying') {
            progress.message(
              `resuming stream ${p.streamId}: reading the source from its start and verifying it against the ${p.resumedFrom} chunks already stored`,
              'resume',
            );
          } else if (p.resumedFrom > 0) {
            progress.message(
              `the source matches the ${p.resumedFrom} chunks already stored; sending from chunk ${p.resumedFrom} on`,
              'resume',
            );
          }
        }
        // While sending, progress is what is stored: the source may be read up to --buffer ahead of it.
        const verifying = p.phase === 'verifying';
        progress.update({
          bytes: verifying ? p.rawBytesRead : p.rawBytesStored,
          unit: verifying ? 'verified' : 'stored',
          expected,
          fields: {
            phase: p.phase,
            rawBytes: verifying ? p.rawBytesRead : p.rawBytesStored,
            rawBytesRead: p.rawBytesRead,
            storedBytes: p.storedBytes,
            chunksStored: p.watermark,
            uploads: p.uploadsInFlight,
          },
          line: (head) =>
            p.phase === 'verifying'
              ? `send verifying chunk ${p.chunksRead} of ${p.resumedFrom} against the stored stream · ${head}`
              : `send ${head} · ${p.watermark} chunks stored · ${describeRatio(p.rawBytesStored, p.storedBytes).split(':')[0]} · ${p.uploadsInFlight} uploading`,
        });
      },
    });
    const resumed = summary.tookOver
      ? {
          resumedFrom: summary.resumedFrom,
          chunksVerified: summary.resumedFrom,
          chunksUploaded: summary.chunksUploaded,
          chunksReused: summary.chunksReused ?? 0,
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
      encrypted: encryption.key !== undefined,
      ...resumed,
      requests: store.counts,
    });
    return 0;
  } catch (error) {
    source.stop();
    throw error;
  } finally {
    interrupt.dispose();
    await metrics.close();
    await codec.close();
    await store.close();
  }
}

/** `--max-lag 64` (chunks) or `--max-lag 2GiB` (bytes: whole chunks of `chunkSize`, at least one). */
function maxLagOption(values: ParsedCommandLine['values'], chunkSize: number): number | undefined {
  const raw = values['max-lag'];
  if (raw === undefined) {
    if (values['max-lag-wait'] !== undefined) throw new UsageError('--max-lag-wait applies only with --max-lag');
    return undefined;
  }
  const text = String(raw).trim();
  if (/^\d+$/.test(text)) return integerOption(values, 'max-lag', 0, 1, 1e12);
  const bytes = parseByteSize(text);
  if (bytes === null) throw new UsageError(`--max-lag ${text}: write a number of chunks (64) or a size (2GiB)`);
  if (bytes < chunkSize) throw new UsageError(`--max-lag ${text}: less than one chunk of ${formatBytes(chunkSize)}`);
  return Math.floor(bytes / chunkSize);
}

/** The gate's settings, with what it waits for on the progress line and, at most every 30 s or when the receiver changes, as a message. */
function lagLimit(maxLag: number, values: ParsedCommandLine['values'], progress: ProgressReporter): NonNullable<SendOptions['lag']> {
  let said: { receiverId: string | null; at: number } | undefined;
  return {
    maxLag,
    firstReceiverWaitMs: values['max-lag-wait'] === '0' ? 0 : durationOption(values, 'max-lag-wait', 10_000),
    onWarning: (message) => progress.warning(message),
    onWait: (wait) => {
      if (wait === null) return;
      const what =
        wait.receiverId === null
          ? `a first receiver to register (--max-lag ${maxLag}: holding chunk ${wait.next})`
          : `receiver ${wait.receiverId}: chunk ${wait.position}, ${wait.behind} behind (--max-lag ${maxLag})`;
      progress.note(`send waiting for ${what}`);
      if (said?.receiverId !== wait.receiverId || Date.now() - said.at >= 30_000) {
        said = { receiverId: wait.receiverId, at: Date.now() };
        progress.message(`waiting for ${what}`, 'waiting', { waitingFor: what, receiverId: wait.receiverId, behind: wait.behind, maxLag });
      }
    },
  };
}
