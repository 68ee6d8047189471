import { hostname } from 'node:os';
import {
  BucketpipeError,
  type CodecPool,
  type EncryptionKey,
  type MissingChunkPolicy,
  type ObjectStore,
  PrefixedStore,
  type ReceiveProgress,
  type ReceiveSummary,
  type RetryPolicy,
  readManifest,
  receive,
  type Sink,
  SinkFailedError,
  StreamConflictError,
  withRetry,
} from '@bucketpipe/core';
import {
  type AppliedStream,
  planReceive,
  type ReceivePlan,
  readCutoverRequest,
  readSeries,
  readSeriesReceiver,
  readStreamRecord,
  SERIES_RECEIVER_FORMAT,
  SERIES_RECEIVER_VERSION,
  type SeriesReceiverRecord,
  type SeriesRecord,
  type StreamRecord,
  streamPrefix,
  writeSeriesReceiver,
} from '@bucketpipe/replication';
import type { Snapshot, Zfs } from '@bucketpipe/zfs';
import type { CommandOutput } from '../command-stderr.js';
import { commandSink } from '../sink.js';
import { deleteAppliedStreams } from './applied-stream-deleter.js';
import { holdTag } from './hold-tag.js';
import { pause } from './pause.js';

export interface ReceiverDaemonOptions {
  /** The series root. */
  store: ObjectStore;
  zfs: Zfs;
  /** The target dataset. */
  dataset: string;
  recvFlags: string[];
  receiverId: string;
  pollMs: number;
  /** Delete the chunks of the streams every registered receiver has applied (deleteAppliedStreams). */
  deleteApplied: boolean;
  stream: {
    concurrency: number;
    bufferBytes: number;
    codec: CodecPool;
    missingChunk: MissingChunkPolicy;
    encryptionKey?: EncryptionKey;
    wrapStore?: (store: ObjectStore) => ObjectStore;
    wrapSink?: (sink: Sink) => Sink;
  };
  retry?: RetryPolicy;
  signal: AbortSignal;
  events: ReceiverDaemonEvents;
}

export interface ReceiverDaemonEvents {
  series(series: SeriesRecord): void;
  applyStart(stream: StreamRecord): void;
  applyProgress(stream: StreamRecord, progress: ReceiveProgress): void;
  applied(stream: StreamRecord, summary: ReceiveSummary, applied: AppliedStream): void;
  /** The cut-over's final stream is on the target: how long after the request (by the two machines' clocks). */
  cutover(seconds: number | null, applied: AppliedStream): void;
  /** --delete-applied deleted the chunks of streams up to `through`. */
  deleted(chunks: number, through: number): void;
  waiting(what: string | null): void;
  warning(text: string): void;
  /** A line `zfs recv` wrote on its stderr. */
  commandOutput: CommandOutput;
}

export interface ReceiverDaemonSummary {
  seriesId: string;
  final: AppliedStream;
  streamsApplied: number;
}

/** How often to look whether an aborted stream has been taken over. */
const ABORTED_STREAM_POLL_MS = 1000;

/**
 * The receiver daemon: applies the series' streams in order into `zfs recv`, each one live while it
 * is uploaded, until the final one is on the target. Where it stands comes from the target's own
 * snapshots (planReceive); restarted at any moment, it applies the stream it was in again from its
 * first chunk, out of the bucket.
 */
export async function runReceiverDaemon(options: ReceiverDaemonOptions): Promise<ReceiverDaemonSummary> {
  const { store, zfs, dataset, signal } = options;
  const retry = { policy: options.retry, signal };
  const series = await waitForSeries(options);
  options.events.series(series);
  const { seriesId } = series;
  const tag = holdTag(seriesId);
  let cursor = await withRetry(() => readSeriesReceiver(store, options.receiverId, signal), retry);
  if (cursor && cursor.seriesId !== seriesId) cursor = null; // of an earlier series at this URL
  const publish = async (change: Partial<SeriesReceiverRecord>) => {
    const record: SeriesReceiverRecord = {
      format: SERIES_RECEIVER_FORMAT,
      version: SERIES_RECEIVER_VERSION,
      seriesId,
      receiverId: options.receiverId,
      host: hostname(),
      dataset,
      state: 'waiting',
      applied: cursor?.applied ?? null,
      ...(cursor?.deletedThrough === undefined ? {} : { deletedThrough: cursor.deletedThrough }),
      ...change,
      updatedAt: new Date().toISOString(),
    };
    if (record.state !== 'receiving') delete record.receiving;
    await withRetry(() => writeSeriesReceiver(store, record, signal), retry);
    cursor = record;
  };

  let streamsApplied = 0;
  let waitingPublished = false;
  for (;;) {
    signal.throwIfAborted();
    const { plan, streams } = await planFromBucket(options, cursor?.applied?.seq);
    switch (plan.kind) {
      case 'conflict':
        await publish({ state: 'failed', error: plan.message }).catch(() => {});
        throw new StreamConflictError(plan.code, plan.message);
      case 'done': {
        const applied = cursor?.applied?.seq === plan.applied.seq ? cursor.applied : await appliedNow(zfs, dataset, plan.applied);
        await publish({ state: 'done', applied });
        const request = await withRetry(() => readCutoverRequest(store, seriesId, signal), retry);
        options.events.cutover(request ? (Date.parse(applied.at) - Date.parse(request.requestedAt)) / 1000 : null, applied);
        return { seriesId, final: applied, streamsApplied };
      }
      case 'wait':
        if (plan.applied && cursor?.applied?.seq !== plan.applied.seq) {
          await publish({ state: 'waiting', applied: await appliedNow(zfs, dataset, plan.applied) });
        } else if (!waitingPublished) {
          await publish({ state: 'waiting' });
        }
        waitingPublished = true;
        options.events.waiting(plan.applied ? `stream ${plan.applied.seq + 1} of the series` : 'the first stream of the series');
        await waitForNewStream(options, streams);
        continue;
      case 'apply': {
        options.events.waiting(null);
        waitingPublished = false;
        await publish({ state: 'receiving', receiving: plan.stream.seq });
        const outcome = await applyStream(options, plan.stream).catch(async (error: unknown) => {
          const refused = targetRefusal(error, dataset, plan);
          await publish({ state: 'failed', error: (refused ?? (error as Error)).message.split('\n')[0] }).catch(() => {});
          throw refused ?? error;
        });
        if (outcome === 'retry') continue;
        const applied = await appliedNow(zfs, dataset, plan.stream);
        await zfs.hold(tag, [`${dataset}@${applied.snapshot}`]);
        if (plan.after) await zfs.release(tag, [`${dataset}@${plan.after.to.name}`]).catch(() => {});
        await publish({ state: 'waiting', applied });
        streamsApplied++;
        options.events.applied(plan.stream, outcome, applied);
        if (options.deleteApplied) {
          const deleted = await deleteAppliedStreams({
            store,
            seriesId,
            deletedThrough: cursor?.deletedThrough ?? -1,
            retry: options.retry,
            signal,
          });
          if (deleted.deletedThrough !== (cursor?.deletedThrough ?? -1)) {
            await publish({ state: 'waiting', deletedThrough: deleted.deletedThrough });
            options.events.deleted(deleted.chunks, deleted.deletedThrough);
          }
        }
        continue;
      }
    }
  }
}

/** The plan from the target's snapshots and the stream records, read from where the target should stand. */
async function planFromBucket(
  options: ReceiverDaemonOptions,
  hint: number | undefined,
): Promise<{ plan: Exclude<ReceivePlan, { kind: 'widen' }>; streams: number }> {
  const { store, zfs, dataset, signal } = options;
  const retry = { policy: options.retry, signal };
  const series = await withRetry(() => readSeries(store, signal), retry);
  if (!series) throw seriesGone(store);
  const newest = series.value.streams - 1;
  const target = await zfs.listSnapshots(dataset);
  // No target yet: the full stream is all the plan needs. Otherwise, in the steady state, the
  // stream the cursor says was applied and those after it (one or two reads).
  let from = Math.max(0, Math.min(hint ?? newest, newest));
  const streams: StreamRecord[] = [];
  if (target === null) {
    if (newest >= 0) streams.push(await readRecord(options, 0));
  } else {
    for (let seq = from; seq <= newest; seq++) streams.push(await readRecord(options, seq));
  }
  for (;;) {
    const plan = planReceive({
      dataset,
      target: target === null ? null : target.map(targetSnapshot),
      streams,
      rollback: options.recvFlags.includes('-F'),
    });
    if (plan.kind !== 'widen') return { plan, streams: series.value.streams };
    // The cursor is missing or behind the target: read further back, doubling the window.
    const to = from - 1;
    from = Math.max(0, from - Math.max(1, streams.length));
    const older: StreamRecord[] = [];
    for (let seq = from; seq <= to; seq++) older.push(await readRecord(options, seq));
    streams.unshift(...older);
  }
}

async function readRecord(options: ReceiverDaemonOptions, seq: number): Promise<StreamRecord> {
  const { store, signal } = options;
  const record = await withRetry(() => readStreamRecord(store, seq, signal), { policy: options.retry, signal });
  if (!record) {
    throw new StreamConflictError(
      'BP_SERIES_MALFORMED',
      `${store.description}/${streamPrefix(seq)}replication.json is missing although the series counts stream ${seq}: the series was altered by hand; it cannot be followed`,
    );
  }
  return record;
}

/**
 * Receives one stream into a new `zfs recv`. 'retry' when the stream's sender aborted it: it is
 * being taken over, and the stream is applied again from its first chunk (zfs recv, killed before
 * the end record, committed nothing).
 */
async function applyStream(options: ReceiverDaemonOptions, stream: StreamRecord): Promise<ReceiveSummary | 'retry'> {
  const { zfs, dataset, signal } = options;
  if (options.recvFlags.includes('-s') && (await zfs.abortPartialReceive(dataset))) {
    options.events.warning(
      `aborted the partial receive state of ${dataset} (zfs recv -A): stream ${stream.seq} is applied again from its start, out of the bucket`,
    );
  }
  options.events.applyStart(stream);
  const sink = await commandSink(await zfs.recvArgv(options.recvFlags, dataset), options.events.commandOutput);
  try {
    const store = new PrefixedStore(options.store, streamPrefix(stream.seq));
    return await receive({
      store: options.stream.wrapStore ? options.stream.wrapStore(store) : store,
      sink: options.stream.wrapSink ? options.stream.wrapSink(sink) : sink,
      concurrency: options.stream.concurrency,
      bufferBytes: options.stream.bufferBytes,
      pollIntervalMs: options.pollMs,
      receiverId: options.receiverId,
      codec: options.stream.codec,
      retry: options.retry,
      missingChunk: options.stream.missingChunk,
      encryptionKey: options.stream.encryptionKey,
      signal,
      onWaiting: (what) => options.events.waiting(what),
      onWarning: (text) => options.events.warning(text),
      onProgress: (progress) => options.events.applyProgress(stream, progress),
    });
  } catch (error) {
    if (error instanceof BucketpipeError && error.code === 'BP_STREAM_ABORTED' && !signal.aborted) {
      options.events.warning(
        `stream ${stream.seq} was aborted by its sender (${error.message}); it is applied again from its first chunk once a sender takes it over`,
      );
      await waitWhileAborted(options, stream.seq);
      return 'retry';
    }
    throw error;
  }
}

/** Polls the stream's manifest until it is no longer aborted: the sender daemon took it over (or it was replaced). */
async function waitWhileAborted(options: ReceiverDaemonOptions, seq: number): Promise<void> {
  const { signal } = options;
  const store = new PrefixedStore(options.store, streamPrefix(seq));
  options.events.waiting(`stream ${seq} to be taken over by a sender (it was aborted)`);
  for (;;) {
    await pause(Math.max(options.pollMs, ABORTED_STREAM_POLL_MS), signal);
    const found = await withRetry(() => readManifest(store), { policy: options.retry, signal });
    if (found?.manifest.state !== 'aborted') return;
  }
}

/**
 * zfs recv's own refusal of a target changed since its newest snapshot, as a conflict that names the
 * fix; undefined for any other failure.
 */
function targetRefusal(error: unknown, dataset: string, plan: Extract<ReceivePlan, { kind: 'apply' }>): Error | undefined {
  if (!(error instanceof SinkFailedError) || !/has been modified\s+since most recent snapshot/.test(error.message)) return undefined;
  const base = plan.after ? `@${plan.after.to.name}` : 'its newest snapshot';
  return new StreamConflictError(
    'BP_TARGET_MODIFIED',
    `target ${dataset} has been modified since most recent snapshot ${base} (zfs recv refused stream ${plan.stream.seq}; nothing was received): pass --recv-flags=-F to let zfs recv roll the change back, or undo it`,
  );
}

/** The stream's to-snapshot as the target holds it now; an error when `zfs recv` ended 0 without it. */
async function appliedNow(zfs: Zfs, dataset: string, stream: StreamRecord): Promise<AppliedStream> {
  const found = (await zfs.listSnapshots(dataset))?.find((s) => s.guid === stream.to.guid);
  if (!found) {
    throw new StreamConflictError(
      'BP_RECV_NOT_APPLIED',
      `zfs recv into ${dataset} ended without error but ${dataset}@${stream.to.name} (stream ${stream.seq}) is not there: check the --recv-flags (-d or -e change the target's name) and zfs list -t snapshot ${dataset}`,
    );
  }
  return { seq: stream.seq, snapshot: found.snapshot, guid: found.guid, creation: stream.to.creation, at: new Date().toISOString() };
}

/** Polls the series record (one small GET every pollMs) until it counts another stream. */
async function waitForNewStream(options: ReceiverDaemonOptions, streams: number): Promise<void> {
  const { store, signal } = options;
  for (;;) {
    await pause(options.pollMs, signal);
    const found = await withRetry(() => readSeries(store, signal), { policy: options.retry, signal });
    if (!found) throw seriesGone(store);
    if (found.value.streams !== streams) return;
  }
}

async function waitForSeries(options: ReceiverDaemonOptions): Promise<SeriesRecord> {
  const { store, signal } = options;
  for (;;) {
    const found = await withRetry(() => readSeries(store, signal), { policy: options.retry, signal });
    if (found) return found.value;
    options.events.waiting(`the series at ${store.description} to be started (replicate send)`);
    await pause(options.pollMs, signal);
  }
}

function targetSnapshot(s: Snapshot) {
  return { snapshot: s.snapshot, guid: s.guid, createtxg: s.createtxg };
}

function seriesGone(store: ObjectStore): Error {
  return new StreamConflictError(
    'BP_SERIES_GONE',
    `the series record ${store.description}/series.json is gone (removed while receiving?): nothing more can be applied`,
  );
}
