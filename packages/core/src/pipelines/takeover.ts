import { hostname } from 'node:os';
import { StreamConflictError, UsageError } from '../errors.js';
import {
  compareAndSwapManifest,
  heartbeatAgeMs,
  type Manifest,
  readManifest,
  type SenderInfo,
  type VersionedManifest,
} from '../protocol/manifest.js';
import { SENDER_STALE_AFTER_MS } from '../protocol/stream-status.js';
import { type RetryPolicy, withRetry } from '../store/retry.js';
import type { ObjectStore } from '../store/store.js';
import { formatBytes } from '../units.js';
import { isProcessGone, ownProcessIdentity } from './process-identity.js';

/** How old a `sending` stream's heartbeat must be before --takeover may take it: the age at which `inspect`/`ls` call it stale. */
export const DEFAULT_STALE_AFTER_MS = SENDER_STALE_AFTER_MS;

export function senderInfo(now: string): SenderInfo {
  const identity = ownProcessIdentity();
  return {
    id: `${hostname()}:${process.pid}`,
    host: hostname(),
    pid: process.pid,
    startedAt: now,
    heartbeatAt: now,
    ...(identity ? { process: identity } : {}),
  };
}

/** Whether the stream's sender ran on this host and its process is gone (a restart after a crash). */
export function senderGoneHere(sender: SenderInfo): boolean {
  return sender.host === hostname() && isProcessGone(sender.pid, sender.process);
}

export interface TakeoverRequest {
  store: ObjectStore;
  /** What this sender would write; a stream being continued must have been started with the same. */
  chunkSize: number;
  level: number;
  staleAfterMs: number;
  retry?: RetryPolicy;
  signal?: AbortSignal;
}

/** A stream this sender may continue: the manifest as read (its ETag is the one the claim must match). */
export interface TakeoverTarget extends VersionedManifest {
  /** The heartbeat's age when it was read, for messages and the summary. */
  heartbeatAgeMs: number;
}

/**
 * Decides whether --takeover may continue the stream at the root: null when there is none (the
 * sender starts a new one), the manifest when it is aborted or its sender's heartbeat is older
 * than `staleAfterMs`; a complete one too (the sender proves its source gives it, and writes
 * nothing: confirmCompleteStream). Refuses a live sender, and another chunk size or level.
 * Writes nothing: the claim comes after the stored chunks have been checked against the source.
 */
export async function findTakeoverTarget(request: TakeoverRequest): Promise<TakeoverTarget | null> {
  const { store } = request;
  const found = await withRetry(() => readManifest(store), { policy: request.retry, signal: request.signal });
  if (!found) return null;
  const { manifest } = found;
  const where = store.description;
  const ageMs = heartbeatAgeMs(manifest, Date.now());
  // A sender of this host whose process is gone cannot beat again: no need to wait for its heartbeat to age.
  if (manifest.state === 'sending' && ageMs < request.staleAfterMs && !senderGoneHere(manifest.sender)) {
    const { id, host, pid } = manifest.sender;
    throw new StreamConflictError(
      'BP_SENDER_LIVE',
      `stream ${where} has a live sender (${id}, pid ${pid} on ${host}, heartbeat ${seconds(ageMs)} ago, less than the ${seconds(request.staleAfterMs)} --stale-after limit): it cannot be taken over; stop that sender first, or wait until its heartbeat is older than ${seconds(request.staleAfterMs)}`,
    );
  }
  if (manifest.chunkSize !== request.chunkSize || manifest.level !== request.level) {
    throw new UsageError(
      `stream ${where} was started with --chunk-size ${formatBytes(manifest.chunkSize)} and --level ${manifest.level}, not ${formatBytes(request.chunkSize)} and ${request.level}: a takeover continues the stream as it was started; repeat the original command's options`,
      'BP_TAKEOVER_OPTIONS',
    );
  }
  return { ...found, heartbeatAgeMs: ageMs };
}

/**
 * Makes this sender the stream's writer: the manifest as read, back in state `sending` (an aborted
 * stream loses its abortReason) with this sender's identity, written with compare-and-swap on the
 * ETag read by findTakeoverTarget. A lost race means the old sender is alive after all or another
 * takeover won: nothing is overwritten.
 */
export async function claimStream(
  store: ObjectStore,
  target: TakeoverTarget,
  options: { retry?: RetryPolicy; signal?: AbortSignal; expectedRawBytes?: number } = {},
): Promise<VersionedManifest> {
  const now = new Date().toISOString();
  const { abortReason: _, ...previous } = target.manifest;
  // A new estimate replaces the old sender's; without one, the old one stands.
  const estimate = options.expectedRawBytes === undefined ? {} : { expectedRawBytes: options.expectedRawBytes };
  const manifest: Manifest = { ...previous, ...estimate, state: 'sending', updatedAt: now, sender: senderInfo(now) };
  const etag = await withRetry(() => compareAndSwapManifest(store, manifest, target.etag), {
    policy: options.retry,
    signal: options.signal,
  });
  if (etag === null) {
    throw new StreamConflictError(
      'BP_TAKEOVER_RACE',
      `the manifest of stream ${store.description} changed while this sender was taking it over (its sender ${target.manifest.sender.id} is alive after all, or another --takeover won): this sender wrote nothing; see bucketpipe inspect ${store.description}`,
    );
  }
  return { manifest, etag };
}

function seconds(ms: number): string {
  return ms < 10_000 ? `${(ms / 1000).toFixed(1)}s` : `${Math.round(ms / 1000)}s`;
}
