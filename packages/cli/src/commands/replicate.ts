import { availableParallelism, hostname } from 'node:os';
import {
  CodecPool,
  DEFAULT_BUFFER_BYTES,
  DEFAULT_LEVEL,
  DEFAULT_STALE_AFTER_MS,
  defaultMissingChunkPolicy,
  defaultSenderBuffer,
  formatBytes,
  MAX_CHUNK_SIZE,
  MAX_LEVEL,
  MIN_CHUNK_SIZE,
  MIN_LEVEL,
  UsageError,
} from '@bucketpipe/core';
import { datasetName, parseRecvFlags, parseSendFlags, Zfs } from '@bucketpipe/zfs';
import {
  chunkSizeOption,
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
import { type CommandMetrics, metricsOptionSpec, metricsOptionsHelp, startMetrics } from '../metrics/index.js';
import { ProgressReporter } from '../progress.js';
import { rateLimited, rateOption, rateOptionSpec } from '../rate-option.js';
import { runCutover } from '../replicate/cutover.js';
import { type ReceiverDaemonEvents, runReceiverDaemon } from '../replicate/receiver-daemon.js';
import { runSenderDaemon, type SenderDaemonEvents } from '../replicate/sender-daemon.js';
import { interruptSignal } from '../signals.js';
import { defaultConcurrency, storeOpenOptions, storeOptionSpec, storeOptionsHelp } from '../store-options.js';
import { openStreamStore } from '../stores.js';

const DEFAULT_EVERY_MS = 5 * 60_000;
const DEFAULT_KEEP = 3;

const overviewHelp = `usage: bucketpipe replicate send|receive|cutover <series-url> [options]

Runs a migration as a live series of ZFS streams through the bucket: the full copy, then an
increment on a schedule, then, at cut-over, the final one. A series lives at <series-url>:
series.json and streams/<seq>/, each an ordinary stream (receive, inspect, verify and relay work
on any one of them). Both daemons may be stopped and restarted at any moment.

  replicate send <series-url> --dataset POOL/DS [options]     the sender daemon, on the source
  replicate receive <series-url> --dataset POOL/DS [options]  the receiver daemon, on the target
  replicate cutover <series-url> [--no-wait]                  the final snapshot, now

Run "bucketpipe replicate send --help" (receive, cutover) for the options of each.
`;

const sendHelp = `usage: bucketpipe replicate send <series-url> --dataset POOL/DS [options]

The sender daemon. Its first run takes a snapshot (@bp-<UTC time>, or --snapshot) and sends it
full; then every --every it takes a snapshot and sends the increment from the previous one (zfs
send -i), skipping a cycle when the pool says nothing was written. It holds (zfs hold) every
snapshot the series still needs and destroys its own older ones once every registered receiver
has applied them, keeping the --keep newest. It ends (exit 0) after a cut-over
(bucketpipe replicate cutover) with the final stream stored. Restarted, it continues where the
bucket and the source's snapshots say it stands; a stream it was sending is taken over (the same
snapshots give the same bytes) and only what is missing is uploaded.

options:
  --dataset POOL/DS     the source dataset (required)
  --every D             time between increments (default ${DEFAULT_EVERY_MS / 60_000}m)
  --keep N              of bucketpipe's own snapshots, keep the N newest on the source whatever
                        the receivers have applied (default ${DEFAULT_KEEP})
  --snapshot NAME       send this existing snapshot (the part after @) as the full stream, instead
                        of taking one; used only when the series starts
  --send-flags=FLAGS    zfs send flags, e.g. --send-flags="-c -L" or --send-flags=-w (with "=": the
                        value starts with "-"; not -i/-I/-n/-v/-P: the daemon chooses what is sent)
  --poll-interval D     how often a waiting daemon looks for a cut-over request (default 1s)
  --stale-after D       how old another host's sender heartbeat must be before this daemon takes
                        the series over (default ${DEFAULT_STALE_AFTER_MS / 1000}s; a sender of this host whose
                        process is gone is taken over at once)
  --chunk-size SIZE     raw bytes per chunk object (default 16MiB; ${formatBytes(MIN_CHUNK_SIZE)} to ${formatBytes(MAX_CHUNK_SIZE)})
  --level N             zstd level, ${MIN_LEVEL}..${MAX_LEVEL} (default ${DEFAULT_LEVEL})
  --concurrency N       uploads in flight (default 16 to S3 and GCS, 8 to a directory)
  --buffer SIZE         memory for chunks being read, compressed and uploaded (default 512MiB,
                        more with many cores: enough for every thread and upload to be busy,
                        up to 1.5GiB)
  --threads N           compression threads (default: one per core, ${availableParallelism()} here)
  --manifest-interval D how often a stream's manifest is rewritten with progress (default 1s)
  --rate RATE           pace the uploads (200MB/s, 1Gbit/s)
  --no-fsync            (directory store) do not fsync chunks
${encryptionOptionHelp}
${metricsOptionsHelp}
                        also bucketpipe_streams_sent_total and bucketpipe_series_stream
  -q, --quiet           no progress line
  -h, --help

${storeOptionsHelp}
`;

const receiveHelp = `usage: bucketpipe replicate receive <series-url> --dataset POOL/DS [options]

The receiver daemon. Applies the series' streams in order into zfs recv, each one live while it
is uploaded, and ends (exit 0) once the final stream of a cut-over is on the target. Where it
stands comes from the target's own snapshots: a stream whose snapshot the target holds is not
applied again; a target that does not fit the series (another dataset, snapshots the series does
not have) is refused with nothing received. Restarted, it applies the stream it was in again from
its first chunk, out of the bucket. It may start before the sender daemon.

options:
  --dataset POOL/DS     the target dataset (required); zfs recv creates it with the full stream
  --recv-flags=FLAGS    zfs recv flags, e.g. --recv-flags="-F -u" or --recv-flags="-o canmount=off" (with
                        "=": the value starts with "-"; not -n/-v/-d/-e). -F lets
                        zfs recv roll back a target changed since its newest snapshot. With -s
                        (resumable receive), a partial receive state left by an interrupted run is
                        aborted (zfs recv -A) and the stream is applied again from the bucket
  --receiver-id ID      this receiver's name in the series (default: host name)
  --poll-interval D     how often to look for the next stream (default 1s)
  --concurrency N       downloads ahead (default 16 from S3 and GCS, 8 from a directory)
  --buffer SIZE         memory for chunks downloaded ahead (default 512MiB)
  --threads N           decompression threads (default: one per core, ${availableParallelism()} here)
  --missing-chunk-timeout D
                        how long a chunk the manifest counts may stay unreadable (default ${defaultMissingChunkPolicy.timeoutMs / 1000}s)
  --rate RATE           pace the downloads
  --delete-applied      once every registered receiver of the series has applied a stream, delete
                        its chunk objects (its manifest and records stay: inspect still shows it).
                        Like receive --delete-consumed: no replay from the bucket of those streams
${encryptionOptionHelp}
${metricsOptionsHelp}
                        also bucketpipe_replication_lag_seconds (now minus the creation time of
                        the newest snapshot on the target), bucketpipe_streams_applied_total and
                        bucketpipe_series_stream
  -q, --quiet           no progress line
  -h, --help

${storeOptionsHelp}
`;

const cutoverHelp = `usage: bucketpipe replicate cutover <series-url> [--no-wait]

Run after writes to the source have stopped. Tells the running sender daemon, through the bucket,
to take the final snapshot now, send the last increment and mark the series final; then waits
until every registered receiver holds the final snapshot and prints the cut-over time: from this
command to the target holding it.

options:
  --no-wait             return once the request is filed
  --poll-interval D     how often to look (default 250ms)
  -h, --help

${storeOptionsHelp}
`;

const streamOptions: OptionSpec = {
  concurrency: { type: 'string' },
  buffer: { type: 'string' },
  threads: { type: 'string' },
  'poll-interval': { type: 'string' },
  quiet: { type: 'boolean', short: 'q' },
  ...rateOptionSpec,
  ...storeOptionSpec,
  ...encryptionOptionSpec,
  ...metricsOptionSpec,
};

const sendSpec: OptionSpec = {
  ...streamOptions,
  dataset: { type: 'string' },
  every: { type: 'string' },
  keep: { type: 'string' },
  snapshot: { type: 'string' },
  'send-flags': { type: 'string' },
  'stale-after': { type: 'string' },
  'chunk-size': { type: 'string' },
  level: { type: 'string' },
  'manifest-interval': { type: 'string' },
  'no-fsync': { type: 'boolean' },
};

const receiveSpec: OptionSpec = {
  ...streamOptions,
  dataset: { type: 'string' },
  'recv-flags': { type: 'string' },
  'receiver-id': { type: 'string' },
  'missing-chunk-timeout': { type: 'string' },
  'delete-applied': { type: 'boolean' },
};

const cutoverSpec: OptionSpec = { 'no-wait': { type: 'boolean' }, 'poll-interval': { type: 'string' }, ...storeOptionSpec };

const subcommands: Record<string, { help: string; run: (argv: string[], log: Log) => Promise<number> }> = {
  send: { help: sendHelp, run: runReplicateSend },
  receive: { help: receiveHelp, run: runReplicateReceive },
  cutover: { help: cutoverHelp, run: runReplicateCutover },
};

/** `replicate --help` gives the overview; `replicate send --help` the options of the sender daemon. */
export function replicateHelp(argv: string[]): string {
  const name = argv[0];
  return (name === undefined ? undefined : subcommands[name]?.help) ?? overviewHelp;
}

export async function runReplicate(argv: string[], log: Log): Promise<number> {
  const [name, ...rest] = argv;
  const sub = name === undefined ? undefined : subcommands[name];
  if (!sub) {
    throw new UsageError(
      `bucketpipe replicate needs send, receive or cutover${name === undefined ? '' : `, not ${JSON.stringify(name)}`} (see: bucketpipe replicate --help)`,
    );
  }
  return sub.run(rest, log);
}

function requiredDataset(values: Record<string, string | boolean | undefined>, command: string): string {
  const text = stringOption(values, 'dataset');
  if (text === undefined) throw new UsageError(`bucketpipe ${command} needs --dataset POOL/DS (see: bucketpipe ${command} --help)`);
  return datasetName(text);
}

async function runReplicateSend(argv: string[], log: Log): Promise<number> {
  const parsed = parseCommandLine(argv, sendSpec, 'replicate send');
  const url = exactlyOnePositional(parsed, 'replicate send', '<series-url>');
  if (parsed.command.length > 0)
    throw new UsageError('replicate send runs zfs send itself: give zfs send flags with --send-flags="…", not after --');
  const { values } = parsed;
  const dataset = requiredDataset(values, 'replicate send');
  const chunkSize = chunkSizeOption(values);
  const level = integerOption(values, 'level', DEFAULT_LEVEL, MIN_LEVEL, MAX_LEVEL);
  const concurrency = integerOption(values, 'concurrency', defaultConcurrency(url), 1, 256);
  const threads = integerOption(values, 'threads', availableParallelism(), 1, 256);
  const bufferBytes = sizeOption(values, 'buffer', defaultSenderBuffer(chunkSize, concurrency, threads));
  const everyMs = durationOption(values, 'every', DEFAULT_EVERY_MS);
  const keep = integerOption(values, 'keep', DEFAULT_KEEP, 0, 1_000_000);
  const pollMs = durationOption(values, 'poll-interval', 1000);
  const staleAfterMs = durationOption(values, 'stale-after', DEFAULT_STALE_AFTER_MS);
  const sendFlags = parseSendFlags(stringOption(values, 'send-flags') ?? '');
  const rate = rateOption(values);
  const encryption = await encryptionKeyOption(values);
  const zfs = new Zfs();

  const metrics = await startMetrics('send', values, log);
  const store = await openStreamStore(
    url,
    storeOpenOptions(values, { fsync: values['no-fsync'] !== true, concurrency: String(concurrency) }),
  );
  const progress = new ProgressReporter(log, { quiet: values.quiet === true });
  if (encryption.warning) progress.warning(encryption.warning);
  const interrupt = interruptSignal();
  const codec = new CodecPool(threads);
  try {
    const summary = await runSenderDaemon({
      store,
      zfs,
      dataset,
      everyMs,
      keep,
      initialSnapshot: stringOption(values, 'snapshot'),
      sendFlags,
      pollMs,
      staleAfterMs,
      stream: {
        chunkSize,
        level,
        concurrency,
        bufferBytes,
        manifestIntervalMs: durationOption(values, 'manifest-interval', 1000),
        encryptionKey: encryption.key,
        codec,
        wrapStore: (s) => rateLimited(metrics.store(s), rate),
      },
      signal: interrupt.signal,
      events: meteredSenderEvents(metrics, {
        series: (s) =>
          progress.message(
            s.created
              ? `started series ${s.seriesId} at ${store.description} for ${dataset}`
              : `continuing series ${s.seriesId} at ${store.description} (${s.streams} streams so far)`,
            'series',
            { seriesId: s.seriesId, streams: s.streams },
          ),
        snapshot: (name) => progress.message(`took snapshot ${name}`, 'snapshot', { snapshot: name }),
        streamStart: (s, resume) =>
          progress.message(
            `${resume ? 'continuing' : 'sending'} stream ${s.seq}: ${s.from ? `${dataset}@${s.from.name} → @${s.to.name}` : `${dataset}@${s.to.name} (full)`}${s.final ? ', the final one' : ''}`,
            'stream',
            { seq: s.seq, from: s.from?.name ?? null, to: s.to.name, final: s.final, resume },
          ),
        streamProgress: (s, p) =>
          progress.update({
            bytes: p.rawBytesStored,
            unit: 'stored',
            fields: { seq: s.seq, phase: p.phase, rawBytes: p.rawBytesStored, storedBytes: p.storedBytes, chunksStored: p.watermark },
            line: (head) => `replicate send stream ${s.seq} ${head} · ${p.watermark} chunks stored`,
          }),
        streamDone: (s, summary) =>
          progress.message(
            `stream ${s.seq} stored: ${formatBytes(summary.rawBytes)} in ${summary.chunks} chunks (${summary.chunksUploaded} uploaded by this run), ${summary.seconds.toFixed(1)}s`,
            'stream-done',
            {
              seq: s.seq,
              rawBytes: summary.rawBytes,
              storedBytes: summary.storedBytes,
              chunks: summary.chunks,
              chunksUploaded: summary.chunksUploaded,
              seconds: summary.seconds,
            },
          ),
        waiting: (what) => progress.waiting(what),
        pruned: (destroyed, released) =>
          progress.message(
            `pruned: ${destroyed.length > 0 ? `destroyed ${destroyed.join(', ')}` : ''}${destroyed.length > 0 && released.length > 0 ? '; ' : ''}${released.length > 0 ? `released ${released.join(', ')}` : ''}`,
            'prune',
            { destroyed, released },
          ),
        warning: (text) => progress.warning(text),
        commandOutput: (command, line) => log.commandOutput(command, line),
      }),
    });
    progress.summary({
      command: 'replicate send',
      series: store.description,
      seriesId: summary.seriesId,
      streams: summary.streams,
      streamsSent: summary.streamsSent,
      final: summary.final,
      seconds: Number(progress.elapsedSeconds.toFixed(3)),
    });
    return 0;
  } finally {
    interrupt.dispose();
    await metrics.close();
    await codec.close();
    await store.close();
  }
}

async function runReplicateReceive(argv: string[], log: Log): Promise<number> {
  const parsed = parseCommandLine(argv, receiveSpec, 'replicate receive');
  const url = exactlyOnePositional(parsed, 'replicate receive', '<series-url>');
  if (parsed.command.length > 0)
    throw new UsageError('replicate receive runs zfs recv itself: give zfs recv flags with --recv-flags="…", not after --');
  const { values } = parsed;
  const dataset = requiredDataset(values, 'replicate receive');
  const recvFlags = parseRecvFlags(stringOption(values, 'recv-flags') ?? '');
  const concurrency = integerOption(values, 'concurrency', defaultConcurrency(url), 1, 256);
  const bufferBytes = sizeOption(values, 'buffer', DEFAULT_BUFFER_BYTES);
  const threads = integerOption(values, 'threads', availableParallelism(), 1, 256);
  const pollMs = durationOption(values, 'poll-interval', 1000);
  const receiverId =
    stringOption(values, 'receiver-id') ??
    (hostname()
      .replace(/[^A-Za-z0-9._-]/g, '-')
      .replace(/^[.]+/, '') ||
      'receiver');
  if (!/^[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}$/.test(receiverId)) {
    throw new UsageError(`--receiver-id ${JSON.stringify(receiverId)}: use letters, digits, '.', '_' and '-' only`);
  }
  const missingChunkTimeoutMs = durationOption(values, 'missing-chunk-timeout', defaultMissingChunkPolicy.timeoutMs);
  const rate = rateOption(values);
  const encryption = await encryptionKeyOption(values);
  const zfs = new Zfs();

  const metrics = await startMetrics('receive', values, log);
  const store = await openStreamStore(url, storeOpenOptions(values, { concurrency: String(concurrency) }));
  const progress = new ProgressReporter(log, { quiet: values.quiet === true });
  if (encryption.warning) progress.warning(encryption.warning);
  const interrupt = interruptSignal();
  const codec = new CodecPool(threads);
  try {
    const summary = await runReceiverDaemon({
      store,
      zfs,
      dataset,
      recvFlags,
      receiverId,
      pollMs,
      deleteApplied: values['delete-applied'] === true,
      stream: {
        concurrency,
        bufferBytes,
        codec,
        missingChunk: { ...defaultMissingChunkPolicy, timeoutMs: missingChunkTimeoutMs },
        encryptionKey: encryption.key,
        wrapStore: (s) => rateLimited(metrics.store(s), rate),
        wrapSink: (sink) => metrics.sink(sink),
      },
      signal: interrupt.signal,
      events: meteredReceiverEvents(metrics, {
        series: (s) =>
          progress.message(`following series ${s.seriesId} at ${store.description} (${s.dataset}) into ${dataset}`, 'series', {
            seriesId: s.seriesId,
          }),
        applyStart: (s) =>
          progress.message(
            `applying stream ${s.seq}: @${s.to.name}${s.from ? ` (increment from @${s.from.name})` : ' (full)'}${s.final ? ', the final one' : ''}`,
            'stream',
            {
              seq: s.seq,
              from: s.from?.name ?? null,
              to: s.to.name,
              final: s.final,
            },
          ),
        applyProgress: (s, p) =>
          progress.update({
            bytes: p.rawBytesWritten,
            unit: 'written',
            fields: { seq: s.seq, rawBytes: p.rawBytesWritten, chunksWritten: p.chunksWritten, watermark: p.watermark, state: p.state },
            line: (head) =>
              `replicate receive stream ${s.seq} ${head} · chunk ${p.chunksWritten}/${p.watermark}${p.state === 'sending' ? '+' : ''}`,
          }),
        applied: (s, summary, applied) =>
          progress.message(
            `applied stream ${s.seq}: ${dataset}@${applied.snapshot} (${formatBytes(summary.rawBytes)} in ${summary.seconds.toFixed(1)}s); replication lag ${lagText(applied.creation)}`,
            'applied',
            {
              seq: s.seq,
              snapshot: applied.snapshot,
              rawBytes: summary.rawBytes,
              seconds: summary.seconds,
              lagSeconds: Math.max(0, Date.now() / 1000 - applied.creation),
            },
          ),
        cutover: (seconds, applied) =>
          progress.message(
            `the final snapshot ${dataset}@${applied.snapshot} is on the target${seconds === null ? '' : `: cut-over took ${seconds.toFixed(1)}s from the request (by the clocks of two machines)`}`,
            'cutover',
            { snapshot: applied.snapshot, cutoverSeconds: seconds },
          ),
        deleted: (chunks, through) =>
          progress.message(
            `deleted ${chunks} chunk objects of the streams through ${through}, which every receiver has applied`,
            'deleted',
            {
              chunksDeleted: chunks,
              deletedThrough: through,
            },
          ),
        waiting: (what) => progress.waiting(what),
        warning: (text) => progress.warning(text),
        commandOutput: (command, line) => log.commandOutput(command, line),
      }),
    });
    progress.summary({
      command: 'replicate receive',
      series: store.description,
      seriesId: summary.seriesId,
      streamsApplied: summary.streamsApplied,
      final: summary.final,
      seconds: Number(progress.elapsedSeconds.toFixed(3)),
    });
    return 0;
  } finally {
    interrupt.dispose();
    await metrics.close();
    await codec.close();
    await store.close();
  }
}

async function runReplicateCutover(argv: string[], log: Log): Promise<number> {
  const parsed = parseCommandLine(argv, cutoverSpec, 'replicate cutover');
  const url = exactlyOnePositional(parsed, 'replicate cutover', '<series-url>');
  const { values } = parsed;
  const store = await openStreamStore(url, storeOpenOptions(values));
  const progress = new ProgressReporter(log);
  const interrupt = interruptSignal();
  try {
    const summary = await runCutover({
      store,
      noWait: values['no-wait'] === true,
      pollMs: durationOption(values, 'poll-interval', 250),
      signal: interrupt.signal,
      events: {
        requested: (request, series) =>
          progress.message(
            `cut-over requested at ${request.requestedAt} for series ${series.seriesId} (${series.dataset}, ${series.streams} streams so far)`,
            'cutover-requested',
            { requestedAt: request.requestedAt },
          ),
        final: (final, seconds) =>
          progress.message(
            `the sender took the final snapshot @${final.snapshot}: stream ${final.seq} (${seconds.toFixed(1)}s after the request)`,
            'cutover-final',
            { ...final, seconds },
          ),
        waiting: (what) => progress.waiting(what),
      },
    });
    progress.summary({ command: 'replicate cutover', ...summary });
    return 0;
  } finally {
    interrupt.dispose();
    await store.close();
  }
}

/** The daemon's events, told to its metrics as well: each stream's progress, the streams done, waits. */
function meteredSenderEvents(metrics: CommandMetrics, events: SenderDaemonEvents): SenderDaemonEvents {
  const replication = metrics.replication('send');
  return {
    ...events,
    streamProgress: (stream, progress) => {
      metrics.send(progress);
      events.streamProgress(stream, progress);
    },
    streamDone: (stream, summary) => {
      replication.streamSent(stream.seq);
      events.streamDone(stream, summary);
    },
    waiting: (what) => {
      metrics.waiting(what);
      events.waiting(what);
    },
  };
}

function meteredReceiverEvents(metrics: CommandMetrics, events: ReceiverDaemonEvents): ReceiverDaemonEvents {
  const replication = metrics.replication('receive');
  return {
    ...events,
    applyProgress: (stream, progress) => {
      metrics.receive(progress);
      events.applyProgress(stream, progress);
    },
    applied: (stream, summary, applied) => {
      replication.streamApplied(stream.seq, applied.creation);
      events.applied(stream, summary, applied);
    },
    waiting: (what) => {
      metrics.waiting(what);
      events.waiting(what);
    },
  };
}

function lagText(creation: number): string {
  const seconds = Math.max(0, Math.round(Date.now() / 1000 - creation));
  return seconds < 120 ? `${seconds}s` : `${Math.round(seconds / 60)}m`;
}
