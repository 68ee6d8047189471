import type { Manifest } from './manifest.js';
import type { ReceiverCursor } from './receiver-cursor.js';

/**
 * A `sending` stream whose heartbeat is older than this has lost its sender. The sender refreshes
 * the heartbeat at least every 10 s, so this allows five missed beats and some clock skew between
 * the sender's machine and ours.
 */
export const SENDER_STALE_AFTER_MS = 60_000;

export interface SenderStatus {
  /** Milliseconds since the sender's last heartbeat (never negative). */
  heartbeatAgeMs: number;
  /** `sending` with a heartbeat younger than SENDER_STALE_AFTER_MS. */
  live: boolean;
  /** `sending` with an older heartbeat: the sender died without marking the stream aborted. */
  stale: boolean;
}

export function senderStatus(manifest: Manifest, now: number): SenderStatus {
  const heartbeatAgeMs = Math.max(0, now - Date.parse(manifest.sender.heartbeatAt));
  const sending = manifest.state === 'sending';
  return {
    heartbeatAgeMs,
    live: sending && heartbeatAgeMs < SENDER_STALE_AFTER_MS,
    stale: sending && heartbeatAgeMs >= SENDER_STALE_AFTER_MS,
  };
}

/** Cursors of this stream (not of an earlier stream at the same root), and a receiver that has not read a manifest yet. */
export function receiversOf(manifest: Manifest, cursors: readonly ReceiverCursor[]): ReceiverCursor[] {
  return cursors.filter((c) => c.streamId === null || c.streamId === manifest.streamId);
}

/** Receivers of this stream whose cursor is not `done`: waiting, receiving, or failed (and not yet retried). */
export function unfinishedReceivers(manifest: Manifest, cursors: readonly ReceiverCursor[]): ReceiverCursor[] {
  return receiversOf(manifest, cursors).filter((c) => c.state !== 'done');
}
