import { join } from 'node:path';
import {
  formatBytes,
  type ListedStream,
  listLocation,
  type ObjectStore,
  PrefixedStore,
  parseStreamUrl,
  readManifest,
  receiversOf,
  SENDER_STALE_AFTER_MS,
  senderStatus,
  withRetry,
} from '@bucketpipe/core';
import { listSeriesReceivers, readSeries, SERIES_KEY, streamPrefix } from '@bucketpipe/replication';
import { exactlyOnePositional, type OptionSpec, parseCommandLine } from '../args.js';
import type { Log } from '../log/index.js';
import { describeRatio, ProgressReporter } from '../progress.js';
import { storeOpenOptions, storeOptionSpec, storeOptionsHelp } from '../store-options.js';
import { openStreamStore } from '../stores.js';

export const lsHelp = `usage: bucketpipe ls <url> [--json]

Lists the streams at and below <url> (a directory, s3://bucket/prefix or gs://bucket/prefix): every
key prefix that holds a manifest.json, in key order, with its state, raw and stored size, chunks,
age and receivers. A sending stream whose heartbeat is older than ${SENDER_STALE_AFTER_MS / 1000}s is marked stale: its
sender has died without marking it aborted. Costs about one listing request per stream, however
many chunks it has.

A replication series (a prefix holding series.json) is one entry, not one per stream: its streams
so far, whether it is final, replicating or complete (the final stream stored), the sender
daemon's heartbeat (stale after ${SENDER_STALE_AFTER_MS / 1000}s) and its receivers. Its sizes and streams: bucketpipe inspect <series-url>.

options:
  --json        one JSON object: {"location", "streams": [...]}
  -h, --help

${storeOptionsHelp}
`;

const spec: OptionSpec = { json: { type: 'boolean' }, ...storeOptionSpec };

/** One row of the listing, as --json prints it. */
export interface StreamRow {
  url: string;
  path: string;
  /** A stream, or a replication series listed as one entry (its streams are not listed one by one). */
  kind: 'stream' | 'series';
  state: string;
  stale?: boolean;
  heartbeatAgeSeconds?: number;
  streamId?: string;
  createdAt?: string;
  ageSeconds?: number;
  chunks?: number;
  chunkSize?: number;
  rawBytes?: number;
  storedBytes?: number;
  receivers?: { count: number; done: number; ids: Array<{ id: string; state: string }> };
  /** A series: its id, source dataset, how many streams it counts, and whether the final one is registered. */
  seriesId?: string;
  dataset?: string;
  streams?: number;
  final?: boolean;
  error?: { code: string; message: string };
}

export async function runLs(argv: string[], log: Log): Promise<number> {
  const parsed = parseCommandLine(argv, spec, 'ls');
  const url = exactlyOnePositional(parsed, 'ls', '<url>');
  const store = await openStreamStore(url, storeOpenOptions(parsed.values));
  try {
    const { streams, groups } = await listLocation(store, { groups: { marker: SERIES_KEY, members: 'streams/' } });
    const now = Date.now();
    const series = await Promise.all(groups.map((path) => seriesRow(store, url, path, now)));
    const rows = [...streams.map((s) => streamRow(url, s, now)), ...series].sort((a, b) =>
      a.path < b.path ? -1 : a.path > b.path ? 1 : 0,
    );
    if (parsed.values.json === true) {
      process.stdout.write(`${JSON.stringify({ location: store.description, streams: rows }, null, 2)}\n`);
    } else {
      process.stdout.write(renderLs(store.description, rows));
    }
    new ProgressReporter(log).summary({ command: 'ls', location: store.description, streams: rows.length, requests: store.counts });
    return 0;
  } finally {
    await store.close();
  }
}

/** The URL a stream at `path` below `base` has, spelled the way the user spelled `base` (a path stays a path). */
function streamUrl(base: string, path: string): string {
  if (path === '') return base;
  const location = parseStreamUrl(base);
  if (location.scheme === 'file' && 'path' in location && !/^file:/i.test(base.trim())) return join(location.path, path);
  return `${location.href}/${path}`;
}

export function streamRow(base: string, s: ListedStream, now: number): StreamRow {
  const url = streamUrl(base, s.path);
  const m = s.manifest;
  if (!m) return { url, path: s.path, kind: 'stream', state: 'unreadable', ...(s.problem ? { error: s.problem } : {}) };
  const sender = senderStatus(m, now);
  const receivers = receiversOf(m, s.receivers);
  return {
    url,
    path: s.path,
    kind: 'stream',
    state: m.state,
    ...(m.state === 'sending' ? { stale: sender.stale, heartbeatAgeSeconds: Math.round(sender.heartbeatAgeMs / 1000) } : {}),
    streamId: m.streamId,
    createdAt: m.createdAt,
    ageSeconds: Math.max(0, Math.round((now - Date.parse(m.createdAt)) / 1000)),
    chunks: m.watermark,
    chunkSize: m.chunkSize,
    rawBytes: m.rawBytes,
    storedBytes: m.storedBytes,
    receivers: {
      count: receivers.length,
      done: receivers.filter((r) => r.state === 'done').length,
      ids: receivers.map((r) => ({ id: r.receiverId, state: r.state })),
    },
  };
}

/**
 * A series as one row, from its series.json, its receivers and the final stream's manifest: a few
 * requests however many streams it has. `replicating` until the final stream is stored, then `complete`.
 */
async function seriesRow(store: ObjectStore, base: string, path: string, now: number): Promise<StreamRow> {
  const url = streamUrl(base, path);
  const root = path === '' ? store : new PrefixedStore(store, `${path}/`);
  try {
    const found = await withRetry(() => readSeries(root));
    if (!found)
      return { url, path, kind: 'series', state: 'unreadable', error: { code: 'BP_SERIES_GONE', message: 'series.json is gone' } };
    const series = found.value;
    const receivers = await withRetry(() => listSeriesReceivers(root, series.seriesId));
    const finalManifest = series.final
      ? await withRetry(() => readManifest(new PrefixedStore(root, streamPrefix(series.final?.seq ?? 0))))
      : null;
    const complete = finalManifest?.manifest.state === 'complete';
    const heartbeatAgeMs = Math.max(0, now - Date.parse(series.sender.heartbeatAt));
    return {
      url,
      path,
      kind: 'series',
      state: complete ? 'complete' : 'replicating',
      ...(complete ? {} : { stale: heartbeatAgeMs >= SENDER_STALE_AFTER_MS, heartbeatAgeSeconds: Math.round(heartbeatAgeMs / 1000) }),
      seriesId: series.seriesId,
      dataset: series.dataset,
      streams: series.streams,
      final: series.final !== undefined,
      createdAt: series.createdAt,
      ageSeconds: Math.max(0, Math.round((now - Date.parse(series.createdAt)) / 1000)),
      receivers: {
        count: receivers.length,
        done: receivers.filter((r) => r.state === 'done').length,
        ids: receivers.map((r) => ({ id: r.receiverId, state: r.state })),
      },
    };
  } catch (error) {
    const code = (error as { code?: unknown }).code;
    return {
      url,
      path,
      kind: 'series',
      state: 'unreadable',
      error: { code: typeof code === 'string' ? code : 'BP_ERROR', message: (error as Error).message },
    };
  }
}

export function renderLs(where: string, rows: StreamRow[]): string {
  if (rows.length === 0) return `no streams at or below ${where}\n`;
  const table: string[][] = [['STREAM', 'STATE', 'RAW', 'STORED', 'CHUNKS', 'AGE', 'RECEIVERS']];
  const problems: string[] = [];
  let raw = 0;
  let stored = 0;
  for (const r of rows) {
    if (r.error) problems.push(`${r.url}: ${r.error.message} [${r.error.code}]`);
    if (r.kind === 'series' && r.streams !== undefined) {
      const heartbeat =
        r.state === 'replicating' ? ` (heartbeat ${compactAge(r.heartbeatAgeSeconds ?? 0)} ago${r.stale ? ', stale' : ''})` : '';
      const receivers = r.receivers?.count ? `${r.receivers.count} (${r.receivers.done} done)` : 'none';
      const what = `series of ${r.streams} stream${r.streams === 1 ? '' : 's'}${r.final ? ', final' : ''}`;
      table.push([r.url, `${what}: ${r.state}${heartbeat}`, '-', '-', '-', compactAge(r.ageSeconds ?? 0), receivers]);
      continue;
    }
    if (r.rawBytes === undefined || r.storedBytes === undefined) {
      table.push([r.url, r.state, '-', '-', '-', '-', '-']);
      continue;
    }
    raw += r.rawBytes;
    stored += r.storedBytes;
    const state =
      r.state === 'sending' ? `sending${r.stale ? ', stale' : ''} (heartbeat ${compactAge(r.heartbeatAgeSeconds ?? 0)} ago)` : r.state;
    const percent =
      r.rawBytes === 0
        ? ''
        : ` (${Math.round((r.storedBytes / r.rawBytes) * 100)}%, ${(r.rawBytes / Math.max(1, r.storedBytes)).toFixed(2)}x)`;
    const receivers = r.receivers?.count ? `${r.receivers.count} (${r.receivers.done} done)` : 'none';
    table.push([
      r.url,
      state,
      formatBytes(r.rawBytes),
      `${formatBytes(r.storedBytes)}${percent}`,
      String(r.chunks),
      compactAge(r.ageSeconds ?? 0),
      receivers,
    ]);
  }
  const widths = (table[0] ?? []).map((_, column) => Math.max(...table.map((line) => (line[column] ?? '').length)));
  const lines = table.map((line) =>
    line
      .map((cell, column) => cell.padEnd(widths[column] ?? 0))
      .join('  ')
      .trimEnd(),
  );
  const seriesCount = rows.filter((r) => r.kind === 'series').length;
  const streamCount = rows.length - seriesCount;
  const count = `${streamCount} stream${streamCount === 1 ? '' : 's'}`;
  const series = seriesCount === 0 ? '' : ` (and ${seriesCount} series, not counted here: bucketpipe inspect <series-url> for its sizes)`;
  lines.push('', `${count}: ${formatBytes(raw)} raw, ${formatBytes(stored)} stored — ${describeRatio(raw, stored)}${series}`, ...problems);
  return `${lines.join('\n')}\n`;
}

function compactAge(seconds: number): string {
  if (seconds < 120) return `${seconds}s`;
  if (seconds < 7200) return `${Math.round(seconds / 60)}m`;
  if (seconds < 172_800) return `${Math.round(seconds / 3600)}h`;
  return `${Math.round(seconds / 86_400)}d`;
}
