import { setTimeout as sleep } from 'node:timers/promises';
import {
  type CountingStore,
  defaultMissingChunkPolicy,
  MANIFEST_KEY,
  type MissingChunkPolicy,
  type ObjectStore,
  relay,
  UsageError,
  withRetry,
} from '@bucketpipe/core';
import { relaySeries, SERIES_KEY } from '@bucketpipe/replication';
import { durationOption, integerOption, type OptionSpec, parseCommandLine } from '../args.js';
import type { Log } from '../log/index.js';
import { type CommandMetrics, metricsOptionSpec, metricsOptionsHelp, startMetrics } from '../metrics/index.js';
import { ProgressReporter } from '../progress.js';
import { rateLimited, rateOption, rateOptionSpec } from '../rate-option.js';
import { interruptSignal } from '../signals.js';
import { storeOpenOptions, storeOptionSpec, storeOptionsHelp } from '../store-options.js';
import { openStreamStore } from '../stores.js';

export const relayHelp = `usage: bucketpipe relay <from-url> <to-url> [options]

Follows the stream at <from-url> while it is being written and copies its objects verbatim (no
recompression) to <to-url>, e.g. from S3 to Google Cloud Storage in real time. Every chunk's header
and payload checksum are checked on the way; the destination's manifest is only ever written after
every chunk it counts is there, so receivers can follow the destination as it fills. Resumable: a
restarted relay carries on from the destination's manifest. Exits 0 when the source stream is
complete and fully copied.

A series (<from-url> holds series.json, written by replicate send) is relayed stream after stream,
live: each stream's replication.json is copied, the destination's series.json is made to count the
stream, then the stream is relayed as above, so a replicate receive daemon at <to-url> follows the
copy (the cut-over request, cutover.json, goes along with the final stream). Restarted, it carries on from the destination's series.json. The series receivers at <to-url>
(receivers/<id>.json) are copied back to <from-url>'s receivers/ whenever they change, so that the
sender daemon's snapshot pruning and replicate cutover see them: this needs write access to that
prefix at the source (without it: a warning, and the sender daemon never prunes what those
receivers still need). Exits 0 when the final stream is relayed and every receiver at <to-url> has
applied it.

options:
  --concurrency N       chunk copies in flight, each holding one chunk in memory (default 8)
  --poll-interval D     how often to look at the source manifest (default 1s)
  --rate RATE           pace the reads from <from-url> to RATE, smoothly: 200MB/s, 50MiB/s, 1Gbit/s
                        (default: no limit). Every byte read is written to <to-url> right after,
                        so the writes follow at the same rate
  --missing-chunk-timeout D
                        how long a chunk the source manifest counts may stay unreadable before the
                        relay gives up on it (default ${defaultMissingChunkPolicy.timeoutMs / 1000}s)
${metricsOptionsHelp}
  -q, --quiet           no progress line
  -h, --help

${storeOptionsHelp}

example:
  bucketpipe relay s3://migr-aws/pgdata gs://migr-gcp/pgdata
  bucketpipe relay s3://migr-aws/series gs://migr-gcp/series     # a replicate series
`;

const spec: OptionSpec = {
  concurrency: { type: 'string' },
  'poll-interval': { type: 'string' },
  'missing-chunk-timeout': { type: 'string' },
  quiet: { type: 'boolean', short: 'q' },
  ...rateOptionSpec,
  ...storeOptionSpec,
  ...metricsOptionSpec,
};

export async function runRelay(argv: string[], log: Log): Promise<number> {
  const parsed = parseCommandLine(argv, spec, 'relay');
  if (parsed.positionals.length !== 2 || parsed.command.length > 0) {
    throw new UsageError('bucketpipe relay takes two stream URLs, <from-url> <to-url>, and no command (see: bucketpipe relay --help)');
  }
  const [fromUrl, toUrl] = parsed.positionals as [string, string];
  const { values } = parsed;
  const concurrency = integerOption(values, 'concurrency', 8, 1, 256);
  const pollIntervalMs = durationOption(values, 'poll-interval', 1000);
  const rate = rateOption(values);
  const missingChunkTimeoutMs = durationOption(values, 'missing-chunk-timeout', defaultMissingChunkPolicy.timeoutMs);
  const storeOptions = storeOpenOptions(values, { concurrency: String(concurrency) });

  const metrics = await startMetrics('relay', values, log);
  const source = await openStreamStore(fromUrl, storeOptions);
  try {
    const destination = await openStreamStore(toUrl, storeOptions);
    try {
      if (source.description === destination.description) {
        throw new UsageError(`relay source and destination are the same stream (${source.description}): give two different URLs`);
      }
      const progress = new ProgressReporter(log, { quiet: values.quiet === true });
      const interrupt = interruptSignal();
      try {
        const from = rateLimited(metrics.store(source, 'source'), rate);
        const to = metrics.store(destination, 'destination');
        const onWaiting = (what: string | null) => {
          metrics.waiting(what);
          progress.waiting(what);
        };
        const kind = await sourceKind(from, pollIntervalMs, interrupt.signal, onWaiting);
        if (kind === 'series') {
          const options = { concurrency, pollIntervalMs, missingChunk: { ...defaultMissingChunkPolicy, timeoutMs: missingChunkTimeoutMs } };
          await relayWholeSeries({ from, to, source, destination, metrics, progress, onWaiting, signal: interrupt.signal, ...options });
          return 0;
        }
        const summary = await relay({
          source: from,
          destination: to,
          concurrency,
          pollIntervalMs,
          missingChunk: { ...defaultMissingChunkPolicy, timeoutMs: missingChunkTimeoutMs },
          signal: interrupt.signal,
          onWaiting,
          onProgress: (p) => {
            metrics.relay(p);
            progress.update({
              bytes: p.storedBytesCopied,
              unit: 'copied',
              fields: {
                storedBytesCopied: p.storedBytesCopied,
                chunksCopied: p.chunksCopied,
                publishedWatermark: p.publishedWatermark,
                sourceWatermark: p.sourceWatermark,
                state: p.state,
              },
              line: (head) =>
                `relay ${head} · published chunk ${p.publishedWatermark}/${p.sourceWatermark}${p.state === 'sending' ? '+' : ''}`,
            });
          },
        });
        progress.summary({
          command: 'relay',
          from: source.description,
          to: destination.description,
          streamId: summary.streamId,
          state: summary.state,
          chunks: summary.chunks,
          chunksCopied: summary.chunksCopied,
          ...copiedFields(summary, source, destination),
        });
        return 0;
      } finally {
        interrupt.dispose();
      }
    } finally {
      await destination.close();
    }
  } finally {
    await metrics.close();
    await source.close();
  }
}

/** Whether <from-url> holds a single stream or a series; waits (like a follower) until it holds either. */
async function sourceKind(
  store: ObjectStore,
  pollIntervalMs: number,
  signal: AbortSignal,
  onWaiting: (what: string | null) => void,
): Promise<'stream' | 'series'> {
  for (;;) {
    if (await withRetry(() => store.head(MANIFEST_KEY), { signal })) return 'stream';
    if (await withRetry(() => store.head(SERIES_KEY), { signal })) {
      onWaiting(null);
      return 'series';
    }
    onWaiting(`the stream or series to start (no ${MANIFEST_KEY} or ${SERIES_KEY} at ${store.description} yet)`);
    await sleep(pollIntervalMs, undefined, { signal });
  }
}

interface SeriesRelayRun {
  /** The stores as the relay uses them (metrics, rate limit), and as opened (their request counts). */
  from: ObjectStore;
  to: ObjectStore;
  source: CountingStore;
  destination: CountingStore;
  metrics: CommandMetrics;
  progress: ProgressReporter;
  onWaiting: (what: string | null) => void;
  concurrency: number;
  pollIntervalMs: number;
  missingChunk: MissingChunkPolicy;
  signal: AbortSignal;
}

/** relay on a series: stream after stream (relaySeries), one progress line for all, one summary. */
async function relayWholeSeries(run: SeriesRelayRun): Promise<void> {
  const { from, to, source, destination, metrics, progress, onWaiting, concurrency, pollIntervalMs, missingChunk, signal } = run;
  let copiedBefore = 0;
  let copiedNow = 0;
  const summary = await relaySeries({
    source: from,
    destination: to,
    concurrency,
    pollIntervalMs,
    missingChunk,
    signal,
    events: {
      waiting: onWaiting,
      warning: (text) => progress.warning(text),
      streamStart: (stream) =>
        progress.message(
          `relaying stream ${stream.seq} (${stream.from ? `@${stream.from.name} → ` : 'full, '}@${stream.to.name}${stream.final ? ', final' : ''})`,
          'stream',
          { seq: stream.seq, to: stream.to.name, final: stream.final },
        ),
      streamDone: (_stream, done) => {
        copiedBefore += done.storedBytesCopied;
        copiedNow = 0;
      },
      streamProgress: (stream, p) => {
        metrics.relay(p);
        copiedNow = p.storedBytesCopied;
        progress.update({
          bytes: copiedBefore + copiedNow,
          unit: 'copied',
          fields: {
            seq: stream.seq,
            storedBytesCopied: copiedBefore + copiedNow,
            publishedWatermark: p.publishedWatermark,
            sourceWatermark: p.sourceWatermark,
            state: p.state,
          },
          line: (head) =>
            `relay ${head} · stream ${stream.seq}: published chunk ${p.publishedWatermark}/${p.sourceWatermark}${p.state === 'sending' ? '+' : ''}`,
        });
      },
    },
  });
  progress.summary({
    command: 'relay',
    from: source.description,
    to: destination.description,
    seriesId: summary.seriesId,
    streams: summary.streams,
    streamsRelayed: summary.streamsRelayed,
    chunksCopied: summary.chunksCopied,
    ...copiedFields(summary, source, destination),
  });
}

/** The summary fields a relay of a stream and of a series share: what was copied, how fast, the requests of each side. */
function copiedFields(
  copied: { storedBytesCopied: number; rawBytes: number; seconds: number },
  source: CountingStore,
  destination: CountingStore,
) {
  return {
    storedBytesCopied: copied.storedBytesCopied,
    rawBytes: copied.rawBytes,
    seconds: Number(copied.seconds.toFixed(3)),
    MBps: Number((copied.storedBytesCopied / 1e6 / copied.seconds).toFixed(1)),
    requests: { from: source.counts, to: destination.counts },
  };
}
