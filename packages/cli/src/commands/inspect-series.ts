import { formatBytes, formatRate, UsageError } from '@bucketpipe/core';
import type { SeriesReceiverStatus, SeriesStatus, SeriesStreamStatus, SnapshotRef } from '@bucketpipe/replication';
import { formatDuration } from '../progress/progress-text.js';
import { describeRatio } from '../progress.js';

/** Streams shown one by one unless --streams says otherwise; the totals always count all. */
export const DEFAULT_SHOWN_STREAMS = 20;

/** `--streams N|all`. */
export function parseShownStreams(raw: string | undefined): number | 'all' {
  if (raw === undefined) return DEFAULT_SHOWN_STREAMS;
  if (raw.trim().toLowerCase() === 'all') return 'all';
  if (/^\d+$/.test(raw.trim()) && Number(raw) <= 1_000_000_000) return Number(raw);
  throw new UsageError(`--streams ${JSON.stringify(raw)}: give how many of the newest streams to show (a number, 0 for none) or "all"`);
}

/** What `inspect --json` prints for a series (README: inspect); fields are only ever added. */
export interface SeriesJson {
  series: string;
  kind: 'series';
  record: SeriesStatus['series'];
  sender: { state: SeriesStatus['sender']['state']; heartbeatAgeSeconds: number };
  totals: SeriesStatus['totals'];
  /** The streams listed below: the newest `count`, from stream `from` on. */
  shown: { from: number; count: number };
  streams: Array<{
    seq: number;
    from: SnapshotRef | null;
    to: SnapshotRef | null;
    final: boolean;
    state: SeriesStreamStatus['state'];
    streamId: string | null;
    chunks: number;
    rawBytes: number;
    storedBytes: number;
  }>;
  receivers: Array<
    SeriesReceiverStatus['record'] & {
      lagSeconds: number | null;
      stream: { seq: number; position: number; watermark: number | null; rawBytes: number } | null;
    }
  >;
  /** The final stream is complete and every receiver applied it (what ends --watch). */
  finished: boolean;
}

export function seriesJson(where: string, s: SeriesStatus): SeriesJson {
  return {
    series: where,
    kind: 'series',
    record: s.series,
    sender: { state: s.sender.state, heartbeatAgeSeconds: Math.round(s.sender.heartbeatAgeMs / 1000) },
    totals: s.totals,
    shown: { from: s.streams[0]?.seq ?? s.totals.streams, count: s.streams.length },
    streams: s.streams.map((stream) => ({
      seq: stream.seq,
      from: stream.record?.from ?? null,
      to: stream.record?.to ?? null,
      final: stream.record?.final ?? false,
      state: stream.state,
      streamId: stream.manifest?.streamId ?? null,
      chunks: stream.manifest?.watermark ?? 0,
      rawBytes: stream.manifest?.rawBytes ?? 0,
      storedBytes: stream.manifest?.storedBytes ?? 0,
    })),
    receivers: s.receivers.map((r) => ({
      ...r.record,
      lagSeconds: r.lagSeconds,
      stream:
        r.record.receiving === undefined || !r.cursor
          ? null
          : {
              seq: r.record.receiving,
              position: r.cursor.position,
              watermark: r.receivingManifest?.watermark ?? null,
              rawBytes: r.cursor.rawBytes,
            },
    })),
    finished: s.finished,
  };
}

/** The series as `inspect` prints it: the series, totals, the streams shown as a table, each receiver with its lag. */
export function renderSeries(where: string, s: SeriesStatus, now: number, senderRate?: string): string {
  const age = (iso: string) => `${formatDuration(Math.max(0, Math.round((now - Date.parse(iso)) / 1000)))} ago`;
  const { series, totals } = s;
  const heartbeat = `heartbeat ${formatDuration(Math.round(s.sender.heartbeatAgeMs / 1000))} ago`;
  const sender =
    s.sender.state === 'finished'
      ? `${series.sender.id}: finished (the final stream is complete)`
      : s.sender.state === 'live'
        ? `${series.sender.id}, ${heartbeat}`
        : `${series.sender.id}, ${heartbeat}: STALE (the sender daemon died or hangs; restart it)`;
  const source = series.sourceNewest
    ? `newest snapshot @${series.sourceNewest.name} (created ${age(new Date(series.sourceNewest.creation * 1000).toISOString())})`
    : 'not seen yet';
  const byState = (['complete', 'sending', 'aborted', 'not started'] as const)
    .filter((state) => totals.byState[state] > 0)
    .map((state) => `${totals.byState[state]} ${state}`)
    .join(', ');
  const rows: Array<[string, string]> = [
    ['series', where],
    ['id', series.seriesId],
    ['dataset', `${series.dataset} (source)`],
    ['created', `${series.createdAt} (${age(series.createdAt)})`],
    ['sender', sender],
    ['source', source],
    ['final', series.final ? `yes: stream ${series.final.seq}, @${series.final.snapshot} (cut-over at ${series.final.at})` : 'not yet'],
    ['streams', totals.streams === 0 ? 'none yet' : `${totals.streams}: ${byState}`],
    [
      'size',
      `${formatBytes(totals.rawBytes)} raw, ${formatBytes(totals.storedBytes)} stored in ${totals.chunks} chunks — ${describeRatio(totals.rawBytes, totals.storedBytes)}`,
    ],
  ];
  if (senderRate !== undefined) rows.push(['sender rate', senderRate]);
  if (s.receivers.length === 0) rows.push(['receivers', 'none registered']);
  for (const r of s.receivers) rows.push([`receiver ${r.record.receiverId}`, describeReceiver(r, now)]);
  const width = Math.max(...rows.map(([label]) => label.length));
  const lines = rows.map(([label, value]) => `${label.padEnd(width)}  ${value}`);
  if (s.streams.length > 0) {
    lines.push('', ...streamTable(s.streams));
    const hidden = totals.streams - s.streams.length;
    if (hidden > 0) lines.push(`(the newest ${s.streams.length} of ${totals.streams} streams; --streams N or --streams all for more)`);
  }
  return `${lines.join('\n')}\n`;
}

function describeReceiver(r: SeriesReceiverStatus, now: number): string {
  const { record } = r;
  const applied = record.applied
    ? `applied stream ${record.applied.seq} (@${record.applied.snapshot}), replication lag ${formatDuration(r.lagSeconds ?? 0)}`
    : 'nothing applied yet';
  let state: string = record.state;
  if (record.state === 'receiving' && record.receiving !== undefined) {
    const where = r.cursor
      ? `, chunk ${r.cursor.position}/${r.receivingManifest?.watermark ?? '?'}${r.receivingManifest?.state === 'sending' ? '+' : ''} (${formatBytes(r.cursor.rawBytes)})`
      : '';
    state = `receiving stream ${record.receiving}${where}`;
  }
  const updated = `${formatDuration(Math.max(0, Math.round((now - Date.parse(record.updatedAt)) / 1000)))} ago`;
  const error = record.error ? ` — ${record.error}` : '';
  return `${state}; ${applied}; into ${record.dataset} on ${record.host}, updated ${updated}${error}`;
}

function streamTable(streams: readonly SeriesStreamStatus[]): string[] {
  const snapshot = (ref: SnapshotRef | null | undefined) => (ref ? `@${ref.name}` : '(full)');
  const table: string[][] = [['SEQ', 'FROM', 'TO', 'RAW', 'STORED', 'STATE']];
  for (const s of streams) {
    const m = s.manifest;
    table.push([
      String(s.seq),
      s.record ? snapshot(s.record.from) : '?',
      s.record ? `${snapshot(s.record.to)}${s.record.final ? ' (final)' : ''}` : '? (replication.json missing)',
      m ? formatBytes(m.rawBytes) : '-',
      m ? formatBytes(m.storedBytes) : '-',
      s.state === 'aborted' ? `aborted: ${m?.abortReason ?? 'no reason given'}` : s.state,
    ]);
  }
  const widths = (table[0] ?? []).map((_, column) => Math.max(...table.map((line) => (line[column] ?? '').length)));
  return table.map((line, row) =>
    line
      .map((cell, column) =>
        column === 1 ? `${cell.padEnd(widths[column] ?? 0)} ${row === 0 ? ' ' : '→'}` : cell.padEnd(widths[column] ?? 0),
      )
      .join('  ')
      .trimEnd(),
  );
}

/**
 * The rate at which the series' raw bytes grow, over the readings of the last `windowMs`: what the
 * sender daemon stores, all streams together.
 */
export class SeriesRate {
  readonly #windowMs: number;
  #samples: Array<{ at: number; bytes: number }> = [];

  constructor(windowMs: number) {
    this.#windowMs = windowMs;
  }

  record(at: number, rawBytes: number): void {
    if ((this.#samples.at(-1)?.bytes ?? 0) > rawBytes) this.#samples = [];
    this.#samples.push({ at, bytes: rawBytes });
    while (this.#samples.length > 2 && (this.#samples[1] as { at: number }).at <= at - this.#windowMs) this.#samples.shift();
  }

  describe(status: SeriesStatus): string {
    if (status.sender.state === 'finished') return 'done';
    const first = this.#samples[0];
    const last = this.#samples.at(-1);
    if (!first || !last || last.at <= first.at) return 'measuring…';
    const rate = ((last.bytes - first.bytes) * 1000) / (last.at - first.at);
    return `${formatRate(rate, 1)} raw (all streams together)`;
  }
}
