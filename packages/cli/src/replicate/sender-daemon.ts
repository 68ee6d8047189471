import { setTimeout as sleep } from 'node:timers/promises';
import {
  type CodecPool,
  type EncryptionKey,
  type ObjectStore,
  PrefixedStore,
  type RetryPolicy,
  readManifest,
  type SendProgress,
  type SendSummary,
  StreamConflictError,
  send,
  withRetry,
} from '@bucketpipe/core';
import {
  claimSeries,
  createStreamRecord,
  listSeriesReceivers,
  planPrune,
  planSend,
  readCutoverRequest,
  readStreamRecord,
  type SendPlan,
  type SeriesOwner,
  type SourceSnapshot,
  STREAM_RECORD_FORMAT,
  STREAM_RECORD_VERSION,
  type StreamRecord,
  snapshotRef,
  streamPrefix,
} from '@bucketpipe/replication';
import { bucketpipeSnapshotName, isBucketpipeSnapshotName, type Snapshot, StreamEndCheck, type Zfs, ZfsError } from '@bucketpipe/zfs';
import type { CommandOutput } from '../command-stderr.js';
import { commandSource } from '../source.js';
import { holdTag } from './hold-tag.js';
import { pause } from './pause.js';

export interface SenderDaemonOptions {
  /** The series root. */
  store: ObjectStore;
  zfs: Zfs;
  dataset: string;
  everyMs: number;
  keep: number;
  initialSnapshot?: string;
  sendFlags: string[];
  /** How often a waiting daemon looks for a cut-over request. */
  pollMs: number;
  staleAfterMs: number;
  stream: {
    chunkSize: number;
    level: number;
    concurrency: number;
    bufferBytes: number;
    manifestIntervalMs: number;
    encryptionKey?: EncryptionKey;
    codec: CodecPool;
    /** Wraps each stream's store (metrics, rate limit). */
    wrapStore?: (store: ObjectStore) => ObjectStore;
  };
  retry?: RetryPolicy;
  signal: AbortSignal;
  events: SenderDaemonEvents;
}

export interface SenderDaemonEvents {
  series(series: { seriesId: string; created: boolean; streams: number }): void;
  snapshot(name: string): void;
  streamStart(stream: StreamRecord, resume: boolean): void;
  streamProgress(stream: StreamRecord, progress: SendProgress): void;
  streamDone(stream: StreamRecord, summary: SendSummary): void;
  waiting(what: string | null): void;
  pruned(destroyed: string[], released: string[]): void;
  warning(text: string): void;
  /** A line `zfs send` wrote on its stderr. */
  commandOutput: CommandOutput;
}

export interface SenderDaemonSummary {
  seriesId: string;
  streams: number;
  final: { seq: number; snapshot: string };
  streamsSent: number;
}

const PRUNE_EVERY_MS = 30_000;
const HEARTBEAT_EVERY_MS = 10_000;

/**
 * The sender daemon: keeps the series going — the full stream, then an increment every `everyMs`
 * — until a cut-over request makes it send the final stream. Restarted at any moment, it picks up
 * where the bucket and the source's snapshots say it stands: a stream not completely sent is taken
 * over (the same snapshots give the same bytes, so only what is missing is uploaded).
 */
export async function runSenderDaemon(options: SenderDaemonOptions): Promise<SenderDaemonSummary> {
  const { store, zfs, dataset, signal } = options;
  const retry = { policy: options.retry, signal };
  const owner = await claimSeries({
    store,
    dataset,
    staleAfterMs: options.staleAfterMs,
    retry: options.retry,
    signal,
  });
  const seriesId = owner.record.seriesId;
  options.events.series({
    seriesId,
    created: owner.record.streams === 0 && owner.record.createdAt === owner.record.updatedAt,
    streams: owner.record.streams,
  });
  const tag = holdTag(seriesId);
  const heartbeat = setInterval(() => void owner.update(undefined, signal).catch(() => {}), HEARTBEAT_EVERY_MS);
  heartbeat.unref();
  let streamsSent = 0;
  let prunedAt = 0;
  try {
    for (;;) {
      signal.throwIfAborted();
      const count = owner.record.streams;
      const recorded = await withRetry(() => readStreamRecord(store, count, signal), retry);
      if (recorded) {
        // Recorded by a sender that died before it registered the stream: register it now.
        await register(owner, recorded, signal);
        continue;
      }
      const last = count > 0 ? await withRetry(() => readStreamRecord(store, count - 1, signal), retry) : null;
      if (count > 0 && last === null) throw missingRecord(store, count - 1);
      const lastComplete = last === null || (await streamState(streamStore(options, last.seq), retry)) === 'complete';
      const source = await listSource(zfs, dataset);
      const newest = source.at(-1);
      if (newest && newest.guid !== owner.record.sourceNewest?.guid) {
        // For inspect: the source's newest snapshot, as this daemon sees it.
        await owner.update((record) => ({ ...record, sourceNewest: snapshotRef(newest) }), signal);
      }
      const cutover = (await withRetry(() => readCutoverRequest(store, seriesId, signal), retry)) !== null;
      const planInput = {
        dataset,
        source,
        last,
        lastComplete,
        cutover,
        now: Date.now(),
        everyMs: options.everyMs,
        writtenSinceNewest: undefined as number | undefined,
        isOwnSnapshot: isBucketpipeSnapshotName,
        initialSnapshot: options.initialSnapshot,
      };
      let plan = planSend(planInput);
      if (plan.kind === 'send' && plan.to === 'take' && !plan.final && last !== null) {
        // Due: ask the pool whether anything was written since the last snapshot (where it can tell).
        plan = planSend({ ...planInput, writtenSinceNewest: await zfs.writtenSinceNewestSnapshot(dataset) });
      }
      switch (plan.kind) {
        case 'conflict':
          throw new StreamConflictError(plan.code, plan.message);
        case 'done': {
          const final = owner.record.final;
          if (!final) throw new Error('bug: the series is done but not final');
          await prune(options, owner, tag, last, source);
          return { seriesId, streams: owner.record.streams, final, streamsSent };
        }
        case 'wait': {
          if (Date.now() - prunedAt >= PRUNE_EVERY_MS) {
            prunedAt = Date.now();
            await prune(options, owner, tag, last, source);
          }
          options.events.waiting(plan.skipped ? `the next snapshot (${plan.skipped} since the last one)` : 'the next snapshot');
          await waitForCutover(options, seriesId, plan.until);
          continue;
        }
        case 'resume':
          options.events.waiting(null);
          await sendStream(options, plan.stream, true);
          streamsSent++;
          continue;
        case 'send': {
          options.events.waiting(null);
          const stream = await recordStream(options, owner, plan, tag);
          await sendStream(options, stream, false);
          streamsSent++;
          prunedAt = Date.now();
          await prune(options, owner, tag, stream, await listSource(zfs, dataset));
          continue;
        }
      }
    }
  } finally {
    clearInterval(heartbeat);
  }
}

/** Sleeps until `until`, looking for a cut-over request every `pollMs` (one small GET); returns early on one. */
async function waitForCutover(options: SenderDaemonOptions, seriesId: string, until: number): Promise<void> {
  const { store, signal } = options;
  while (Date.now() < until) {
    await pause(Math.min(until - Date.now(), options.pollMs), signal);
    if (await withRetry(() => readCutoverRequest(store, seriesId, signal), { policy: options.retry, signal })) return;
  }
}

/** Takes (or picks) the to-snapshot, holds it, records the stream create-only and registers it in the series. */
async function recordStream(
  options: SenderDaemonOptions,
  owner: SeriesOwner,
  plan: Extract<SendPlan, { kind: 'send' }>,
  tag: string,
): Promise<StreamRecord> {
  const { zfs, dataset, store, signal } = options;
  const to = plan.to === 'take' ? await takeSnapshot(zfs, dataset, options.events) : plan.to;
  await zfs.hold(tag, [`${dataset}@${to.name}`]);
  const seq = owner.record.streams;
  const stream: StreamRecord = {
    format: STREAM_RECORD_FORMAT,
    version: STREAM_RECORD_VERSION,
    seriesId: owner.record.seriesId,
    seq,
    createdAt: new Date().toISOString(),
    dataset,
    from: plan.from && snapshotRef(plan.from),
    to: snapshotRef(to),
    sendFlags: options.sendFlags,
    final: plan.final,
  };
  const created = await withRetry(() => createStreamRecord(store, stream, signal), { policy: options.retry, signal });
  if (created === null) {
    // Another sender recorded this sequence number between our reads: it owns the series now.
    throw new StreamConflictError(
      'BP_SERIES_RACE',
      `stream ${seq} of the series at ${store.description} was recorded by another process: another sender daemon took the series over; this one stops`,
    );
  }
  await register(owner, stream, signal);
  return stream;
}

async function register(owner: SeriesOwner, stream: StreamRecord, signal: AbortSignal): Promise<void> {
  await owner.update(
    (record) => ({
      ...record,
      streams: stream.seq + 1,
      ...(stream.final ? { final: { seq: stream.seq, snapshot: stream.to.name, at: new Date().toISOString() } } : {}),
    }),
    signal,
  );
}

async function takeSnapshot(zfs: Zfs, dataset: string, events: SenderDaemonEvents): Promise<SourceSnapshot> {
  for (;;) {
    const name = bucketpipeSnapshotName(new Date());
    try {
      const snapshot = await zfs.snapshot(dataset, name);
      events.snapshot(snapshot.name);
      return sourceSnapshot(snapshot);
    } catch (error) {
      // Two snapshots in one second (a cut-over right after a scheduled one): take the next second's name.
      if (!(error instanceof ZfsError && error.code === 'BP_ZFS_SNAPSHOT_EXISTS')) throw error;
      await sleep(250);
    }
  }
}

async function sendStream(options: SenderDaemonOptions, stream: StreamRecord, resume: boolean): Promise<void> {
  const { zfs, dataset, signal } = options;
  options.events.streamStart(stream, resume);
  const argv = await zfs.sendArgv(
    stream.sendFlags,
    `${dataset}@${stream.to.name}`,
    stream.from ? `${dataset}@${stream.from.name}` : undefined,
  );
  for (;;) {
    const source = await commandSource(argv, options.events.commandOutput);
    try {
      const summary = await send({
        store: streamStore(options, stream.seq),
        source: new StreamEndCheck(source.bytes, { description: source.description, required: true, exit: source.exit }),
        sourceExit: source.exit,
        chunkSize: options.stream.chunkSize,
        level: options.stream.level,
        concurrency: options.stream.concurrency,
        bufferBytes: options.stream.bufferBytes,
        manifestIntervalMs: options.stream.manifestIntervalMs,
        takeover: true,
        staleAfterMs: options.staleAfterMs,
        encryptionKey: options.stream.encryptionKey,
        codec: options.stream.codec,
        retry: options.retry,
        signal,
        onProgress: (progress) => options.events.streamProgress(stream, progress),
      });
      options.events.streamDone(stream, summary);
      return;
    } catch (error) {
      source.stop();
      // The stream's previous sender (this daemon before a restart, on another host) still beats:
      // wait for its heartbeat to go stale rather than fail.
      if (error instanceof StreamConflictError && error.code === 'BP_SENDER_LIVE') {
        options.events.waiting(`the previous sender of stream ${stream.seq} to be gone (${error.message})`);
        await pause(options.pollMs * 5, signal);
        continue;
      }
      throw error;
    }
  }
}

/** Lets go of the source snapshots every registered receiver is past (planPrune), releasing holds first. */
async function prune(
  options: SenderDaemonOptions,
  owner: SeriesOwner,
  tag: string,
  last: StreamRecord | null,
  source: readonly SourceSnapshot[],
): Promise<void> {
  const { store, zfs, dataset, signal } = options;
  const retry = { policy: options.retry, signal };
  const receivers = await withRetry(() => listSeriesReceivers(store, owner.record.seriesId, signal), retry);
  if (receivers.length === 0 || last === null) return;
  const lowest = Math.min(...receivers.map((r) => r.applied?.seq ?? -1));
  if (lowest < 0) return;
  const common = await withRetry(() => readStreamRecord(store, lowest, signal), retry);
  const plan = planPrune({
    source,
    commonToAll: common?.to ?? null,
    inUse: [last.to, ...(last.from ? [last.from] : [])],
    keep: options.keep,
    isOwnSnapshot: isBucketpipeSnapshotName,
  });
  const full = (s: SourceSnapshot) => `${dataset}@${s.name}`;
  if (plan.destroy.length + plan.release.length === 0) return;
  await zfs.release(tag, [...plan.destroy, ...plan.release].map(full));
  for (const snapshot of plan.destroy) await zfs.destroySnapshot(full(snapshot));
  options.events.pruned(plan.destroy.map(full), plan.release.map(full));
}

/** The source's snapshots as the series sees them: short names (after @), GUIDs, txgs. */
async function listSource(zfs: Zfs, dataset: string): Promise<SourceSnapshot[]> {
  const snapshots = await zfs.listSnapshots(dataset);
  if (snapshots === null) {
    throw new ZfsError('BP_ZFS_NO_DATASET', `source dataset ${dataset} does not exist: check --dataset (zfs list)`);
  }
  return snapshots.map(sourceSnapshot);
}

function sourceSnapshot(s: Snapshot): SourceSnapshot {
  return { name: s.snapshot, guid: s.guid, creation: s.creation, createtxg: s.createtxg };
}

function streamStore(options: SenderDaemonOptions, seq: number): ObjectStore {
  const store = new PrefixedStore(options.store, streamPrefix(seq));
  return options.stream.wrapStore ? options.stream.wrapStore(store) : store;
}

async function streamState(store: ObjectStore, retry: { policy?: RetryPolicy; signal: AbortSignal }): Promise<string | null> {
  return (await withRetry(() => readManifest(store), retry))?.manifest.state ?? null;
}

function missingRecord(store: ObjectStore, seq: number): Error {
  return new StreamConflictError(
    'BP_SERIES_MALFORMED',
    `${store.description}/${streamPrefix(seq)}replication.json is missing although the series counts stream ${seq}: the series was altered by hand; it cannot go on`,
  );
}
