import { setTimeout as sleep } from 'node:timers/promises';
import {
  expectedStreamBytes,
  formatBytes,
  formatRate,
  InterruptedError,
  listReceiverCursors,
  type Manifest,
  type ReceiverCursor,
  readManifest,
  receiversOf,
  StoreError,
  UsageError,
  withRetry,
} from '@bucketpipe/core';
import { SeriesStatusReader } from '@bucketpipe/replication';
import { durationOption, exactlyOnePositional, integerOption, type OptionSpec, parseCommandLine } from '../args.js';
import { completion } from '../progress/completion.js';
import { formatDuration } from '../progress/progress-text.js';
import { describeRatio } from '../progress.js';
import { interruptSignal } from '../signals.js';
import { storeOpenOptions, storeOptionSpec, storeOptionsHelp } from '../store-options.js';
import { openStreamStore } from '../stores.js';
import { parseShownStreams, renderSeries, SeriesRate, seriesJson } from './inspect-series.js';

/** On a series: manifests and stream records read in parallel. */
export const DEFAULT_SERIES_READS = 32;

/** Rates are measured over the readings of the last this-many milliseconds (at least two readings). */
export const WATCH_WINDOW_MS = 10_000;

export const inspectHelp = `usage: bucketpipe inspect <stream-or-series-url> [--json | --watch [--interval D]] [--streams N|all]

Shows where a stream stands: state, chunk size and codec, chunks and bytes stored so far, raw
versus stored size (stored is smaller because of compression, not loss), the sender's heartbeat,
and each receiver's position and lag.

On a series (a URL holding series.json, written by replicate send): the series id, the source
dataset, the sender daemon and its heartbeat (stale after 60s), the source's newest snapshot,
whether the series is final; totals over every stream and a table of the newest streams (seq,
from → to snapshot, raw and stored size, state: sending, complete, aborted, or not started while
its manifest is not there yet); and each receiver registered with the series: target dataset,
state, the newest snapshot it applied and the replication lag — now minus that snapshot's
creation time.

options:
  --json        print the manifest and receivers as one JSON object; on a series: {"series",
                "kind": "series", "record" (series.json), "sender": {state, heartbeatAgeSeconds},
                "totals": {streams, rawBytes, storedBytes, chunks, byState}, "shown": {from, count},
                "streams": [{seq, from, to, final, state, streamId, chunks, rawBytes, storedBytes}],
                "receivers": [the receiver's record + lagSeconds and stream: {seq, position,
                watermark, rawBytes} while receiving], "finished"}
  --watch       refresh until the stream is complete and every receiver of it is done (or the
                stream is aborted; Ctrl-C ends it too, exit 130), adding the sender's rate and each
                receiver's rate, lag and ETA, measured between refreshes (raw bytes over the last
                ${WATCH_WINDOW_MS / 1000}s). ETA needs the total: exact once the stream is complete, and
                before that the sender's estimate when it published one (send --size, or zfs send
                -nP), marked with ~. Redraws in place on a terminal, else prints one block per refresh.
                On a series: until the final stream is complete and every receiver applied it
  --interval D  time between refreshes with --watch (default 2s)
  --streams N|all
                on a series: how many of the newest streams to list (default 20); the totals
                always count every stream. A complete stream's manifest is read only once per --watch
  --concurrency N
                on a series: manifests and records read in parallel (default ${DEFAULT_SERIES_READS})
  -h, --help

${storeOptionsHelp}
`;

const spec: OptionSpec = {
  json: { type: 'boolean' },
  watch: { type: 'boolean' },
  interval: { type: 'string' },
  streams: { type: 'string' },
  concurrency: { type: 'string' },
  ...storeOptionSpec,
};

export async function runInspect(argv: string[]): Promise<number> {
  const parsed = parseCommandLine(argv, spec, 'inspect');
  const url = exactlyOnePositional(parsed, 'inspect');
  const { values } = parsed;
  if (values.watch === true && values.json === true) throw new UsageError('--watch and --json cannot be combined');
  if (values.interval !== undefined && values.watch !== true) throw new UsageError('--interval applies only with --watch');
  const intervalMs = durationOption(values, 'interval', 2000);
  const shown = parseShownStreams(typeof values.streams === 'string' ? values.streams : undefined);
  const concurrency = integerOption(values, 'concurrency', DEFAULT_SERIES_READS, 1, 256);
  const store = await openStreamStore(url, storeOpenOptions(parsed.values, { concurrency: String(concurrency) }));
  try {
    const found = await withRetry(() => readManifest(store));
    if (!found) {
      const reader = new SeriesStatusReader(store);
      const status = await reader.read({ show: shown, concurrency });
      if (!status) {
        throw new StoreError(
          'not-found',
          `no stream at ${store.description} (no manifest.json, nor a series' series.json): check the URL, or start the sender first`,
        );
      }
      if (values.watch === true) return await watchSeries(store.description, reader, { show: shown, concurrency }, intervalMs);
      if (values.json === true) {
        process.stdout.write(`${JSON.stringify(seriesJson(store.description, status), null, 2)}\n`);
      } else {
        process.stdout.write(renderSeries(store.description, status, Date.now()));
      }
      return 0;
    }
    for (const option of ['streams', 'concurrency']) {
      if (values[option] !== undefined) throw new UsageError(`--${option} applies to a series; ${store.description} is a single stream`);
    }
    if (values.watch === true) return await watch(store, intervalMs);
    const receivers = await listReceiverCursors(store);
    if (parsed.values.json === true) {
      process.stdout.write(`${JSON.stringify({ stream: store.description, manifest: found.manifest, receivers }, null, 2)}\n`);
    } else {
      process.stdout.write(renderInspect(store.description, found.manifest, receivers, Date.now()));
    }
    return 0;
  } finally {
    await store.close();
  }
}

export function renderInspect(where: string, m: Manifest, receivers: ReceiverCursor[], now: number, rates?: LiveRates): string {
  const age = (iso: string) => `${Math.max(0, Math.round((now - Date.parse(iso)) / 1000))}s ago`;
  const state =
    m.state === 'sending'
      ? `sending (sender ${m.sender.id}, heartbeat ${age(m.sender.heartbeatAt)})`
      : m.state === 'aborted'
        ? `aborted: ${m.abortReason ?? 'no reason given'}`
        : `complete (finished ${age(m.updatedAt)})`;
  const rows: Array<[string, string]> = [
    ['stream', where],
    ['id', m.streamId],
    ['state', state],
    ['created', `${m.createdAt} (${age(m.createdAt)})`],
    ['chunks', `${m.watermark} stored${m.state === 'sending' ? ' so far' : ''}, ${formatBytes(m.chunkSize)} each, zstd level ${m.level}`],
    ['raw', `${formatBytes(m.rawBytes)} (${m.rawBytes} bytes)`],
    ['stored', `${formatBytes(m.storedBytes)} — ${describeRatio(m.rawBytes, m.storedBytes)}`],
    [
      'encryption',
      m.encryption
        ? `${m.encryption.algorithm}, per-stream keys by ${m.encryption.kdf} (receive and verify need --encryption-key-file)`
        : 'none',
    ],
  ];
  if (m.state !== 'complete' && m.expectedRawBytes !== undefined) rows.push(['expected', describeEstimate(m, m.expectedRawBytes)]);
  if (m.final) {
    const over = m.encryption ? "HMAC-SHA256 over the chunks' raw HMACs" : "SHA-256 over the chunks' raw SHA-256s";
    rows.push(['digest', `${m.final.digest} (${over})`]);
  }
  if (rates) rows.push(['sender rate', senderRate(m, rates)]);
  if (receivers.length === 0) rows.push(['receivers', 'none has published a position']);
  for (const r of receivers) {
    const lag = Math.max(0, m.watermark - r.position);
    const position =
      r.streamId !== null && r.streamId !== m.streamId
        ? 'following another stream id (stale)'
        : `chunk ${r.position}/${m.watermark}, ${formatBytes(r.rawBytes)} written, ${lag} chunk${lag === 1 ? '' : 's'} behind`;
    rows.push([
      `receiver ${r.receiverId}`,
      `${r.state}: ${position} (host ${r.host}, updated ${age(r.updatedAt)})${r.error ? ` — ${r.error}` : ''}`,
    ]);
    if (rates && r.streamId === m.streamId) rows.push(['', receiverRate(m, r, rates)]);
  }
  const width = Math.max(...rows.map(([label]) => label.length));
  return `${rows.map(([label, value]) => `${label.padEnd(width)}  ${value}`).join('\n')}\n`;
}

/**
 * Raw bytes over time, from successive readings of the manifest and the cursors (this machine's
 * clock at each reading): the sender's rate from the manifest's rawBytes, each receiver's from its
 * cursor's rawBytes. A reading older than the window is dropped, except the newest one before it.
 */
export class LiveRates {
  #samples = new Map<string, Array<{ at: number; bytes: number }>>();

  record(at: number, m: Manifest, receivers: readonly ReceiverCursor[]): void {
    this.#add('sender', at, m.rawBytes);
    for (const r of receiversOf(m, receivers)) this.#add(`receiver ${r.receiverId}`, at, r.rawBytes);
  }

  /** Bytes per second, or null before the second reading. */
  sender(): number | null {
    return this.#rate('sender');
  }

  receiver(receiverId: string): number | null {
    return this.#rate(`receiver ${receiverId}`);
  }

  #add(key: string, at: number, bytes: number): void {
    const samples = this.#samples.get(key) ?? [];
    // A receiver restarted from an earlier position starts a new series.
    if ((samples.at(-1)?.bytes ?? 0) > bytes) samples.length = 0;
    samples.push({ at, bytes });
    while (samples.length > 2 && (samples[1] as { at: number }).at <= at - WATCH_WINDOW_MS) samples.shift();
    this.#samples.set(key, samples);
  }

  #rate(key: string): number | null {
    const samples = this.#samples.get(key);
    const first = samples?.[0];
    const last = samples?.at(-1);
    if (!first || !last || last.at <= first.at) return null;
    return ((last.bytes - first.bytes) * 1000) / (last.at - first.at);
  }
}

/** "~2.90 GiB (the sender's estimate; 42% stored so far)". */
function describeEstimate(m: Manifest, estimate: number): string {
  if (estimate === 0) return 'unknown (the sender published an estimate of 0)';
  const stored = completion(m.rawBytes, { bytes: estimate, exact: false }, null);
  const share = stored.beyondEstimate ? 'more than that is stored already' : `${stored.percent}% stored so far`;
  return `~${formatBytes(estimate)} (the sender's estimate; ${share})`;
}

function senderRate(m: Manifest, rates: LiveRates): string {
  if (m.state === 'complete') return 'done';
  if (m.state === 'aborted') return 'stopped (aborted)';
  const rate = rates.sender();
  if (rate === null) return 'measuring…';
  const expected = expectedStreamBytes(m);
  if (expected === null) return `${formatRate(rate, 1)} raw; ETA unknown (the total is known only when the source ends)`;
  return `${formatRate(rate, 1)} raw; ${describeEta(m.rawBytes, { bytes: expected, exact: false }, rate)}`;
}

/** "42% of ~2.90 GiB, ETA ~5m12s" against an estimate, "ETA 25s" against the exact total. */
function describeEta(done: number, expected: { bytes: number; exact: boolean }, rate: number): string {
  const c = completion(done, expected, rate);
  if (expected.exact) return c.etaSeconds === null ? 'ETA unknown (not moving)' : `ETA ${formatDuration(c.etaSeconds)}`;
  const of = `${c.percent}% of ~${formatBytes(expected.bytes)}`;
  if (c.beyondEstimate) return `${of}: beyond the sender's estimate, ETA unknown`;
  return c.etaSeconds === null
    ? `${of}, ETA unknown (not moving)`
    : `${of}, ETA ~${formatDuration(c.etaSeconds)} (by the sender's estimate)`;
}

function receiverRate(m: Manifest, r: ReceiverCursor, rates: LiveRates): string {
  const lagBytes = Math.max(0, m.rawBytes - r.rawBytes);
  const lagChunks = Math.max(0, m.watermark - r.position);
  const lag = `lag ${lagChunks} chunk${lagChunks === 1 ? '' : 's'} (${formatBytes(lagBytes)})`;
  if (r.state === 'done') return `${lag}; done`;
  const rate = rates.receiver(r.receiverId);
  const speed = rate === null ? 'rate measuring…' : `${formatRate(rate, 1)}`;
  const expected = expectedStreamBytes(m);
  let eta: string;
  if (r.state === 'failed') eta = 'ETA none (failed)';
  else if (expected === null) eta = 'ETA unknown (the stream is still being sent)';
  else if (rate === null || rate <= 0) eta = 'ETA unknown (not moving)';
  else eta = describeEta(r.rawBytes, { bytes: expected, exact: m.state === 'complete' }, rate);
  return `${speed} · ${lag} · ${eta}`;
}

/** The watch ends when nothing will change any more: complete and every receiver of the stream done, or aborted. */
export function watchFinished(m: Manifest, receivers: readonly ReceiverCursor[]): boolean {
  if (m.state === 'aborted') return true;
  return m.state === 'complete' && receiversOf(m, receivers).every((r) => r.state === 'done');
}

async function watch(store: Awaited<ReturnType<typeof openStreamStore>>, intervalMs: number): Promise<number> {
  const interrupt = interruptSignal();
  const rates = new LiveRates();
  let refreshes = 0;
  try {
    for (;;) {
      const found = await withRetry(() => readManifest(store), { signal: interrupt.signal });
      if (!found) {
        throw new StoreError(
          'not-found',
          `no stream at ${store.description} (no manifest.json)${refreshes > 0 ? ': it was deleted' : ': check the URL, or start the sender first'}`,
        );
      }
      const receivers = await withRetry(() => listReceiverCursors(store), { signal: interrupt.signal });
      const now = Date.now();
      rates.record(now, found.manifest, receivers);
      const block = renderInspect(store.description, found.manifest, receivers, now, rates);
      drawWatchFrame(block, now, refreshes++);
      if (watchFinished(found.manifest, receivers)) return 0;
      await sleep(intervalMs, undefined, { signal: interrupt.signal });
    }
  } catch (error) {
    if (interrupt.signal.aborted && interrupt.signal.reason instanceof InterruptedError) return interrupt.signal.reason.exitCode;
    throw error;
  } finally {
    interrupt.dispose();
  }
}

/** --watch on a series: one reader for all refreshes, so complete manifests and stream records are read once. */
async function watchSeries(
  where: string,
  reader: SeriesStatusReader,
  options: { show: number | 'all'; concurrency: number },
  intervalMs: number,
): Promise<number> {
  const interrupt = interruptSignal();
  const rate = new SeriesRate(WATCH_WINDOW_MS);
  let refreshes = 0;
  try {
    for (;;) {
      const status = await reader.read({ ...options, signal: interrupt.signal });
      if (!status) throw new StoreError('not-found', `no series at ${where} (no series.json): it was deleted`);
      const now = Date.now();
      rate.record(now, status.totals.rawBytes);
      const block = renderSeries(where, status, now, rate.describe(status));
      drawWatchFrame(block, now, refreshes++);
      if (status.finished) return 0;
      await sleep(intervalMs, undefined, { signal: interrupt.signal });
    }
  } catch (error) {
    if (interrupt.signal.aborted && interrupt.signal.reason instanceof InterruptedError) return interrupt.signal.reason.exitCode;
    throw error;
  } finally {
    interrupt.dispose();
  }
}

/**
 * One refresh of --watch: on a terminal, like watch(1), the screen cleared and drawn from its top
 * (long lines may wrap, so moving up by a line count would not do); elsewhere, appended under a
 * timestamp line.
 */
function drawWatchFrame(block: string, now: number, refreshes: number): void {
  if (process.stdout.isTTY === true) process.stdout.write(`\x1b[H\x1b[2J${block}`);
  else process.stdout.write(`${refreshes > 0 ? '\n' : ''}--- ${new Date(now).toISOString()}\n${block}`);
}
