import { IntegrityError } from '../errors.js';
import { StreamDigest } from '../protocol/stream-digest.js';
import { streamKeysFor } from '../protocol/stream-encryption.js';
import { streamIdToBytes } from '../protocol/stream-id.js';
import { formatBytes } from '../units.js';
import { type ChunkReader, IterableChunkReader, isChunkReader } from './chunk-reader.js';
import { checkStoredPrefix } from './resume-check.js';
import type { SendOptions, SendSummary } from './sender.js';
import type { TakeoverTarget } from './takeover.js';

/**
 * `send --takeover` of a stream that is complete already — a restart that came after the old
 * sender finished (a kill that landed after the manifest said complete). Nothing is written: the
 * whole source is read and checked against the stored chunks (their headers), it must end where
 * the stream ends, and its stream digest must be the manifest's. Then the send is done: exit 0, as
 * the restarted command would have ended had it not been killed. A different source is
 * BP_SOURCE_CHANGED, as for any takeover.
 */
export async function confirmCompleteStream(options: SendOptions, target: TakeoverTarget, started: number): Promise<SendSummary> {
  const { store, chunkSize } = options;
  const { manifest } = target;
  const final = manifest.final;
  if (manifest.state !== 'complete' || !final) throw new Error('bug: confirmCompleteStream on a stream that is not complete');
  const keys = streamKeysFor(manifest, options.encryptionKey, store.description);
  const reader: ChunkReader = isChunkReader(options.source) ? options.source : new IterableChunkReader(options.source);
  const digest = new StreamDigest(keys);
  const buffer = new Uint8Array(chunkSize);
  let rawBytesRead = 0;
  try {
    const prefix = await checkStoredPrefix({
      store,
      reader,
      buffer,
      streamId: streamIdToBytes(manifest.streamId),
      keys,
      chunkSize,
      chunks: final.chunks,
      concurrency: options.concurrency,
      retry: options.retry,
      signal: options.signal,
      onVerified: (index, rawDigest, rawLength) => {
        digest.add(index, rawDigest);
        rawBytesRead += rawLength;
        options.onProgress?.({
          streamId: manifest.streamId,
          phase: 'verifying',
          resumedFrom: final.chunks,
          chunksRead: index + 1,
          rawBytesRead,
          watermark: final.chunks,
          rawBytesStored: manifest.rawBytes,
          storedBytes: manifest.storedBytes,
          uploadsInFlight: 0,
        });
      },
    });
    const more = prefix.endsShort ? 0 : await reader.fill(buffer, 1, options.signal);
    if (more > 0) {
      throw new IntegrityError(
        'BP_SOURCE_CHANGED',
        `the source goes on after the ${final.chunks} chunks (${formatBytes(final.rawBytes)}) of stream ${store.description}, which is complete: it is not the source the stream was sent from; nothing was written`,
      );
    }
    const sourceDigest = digest.digest();
    if (sourceDigest !== final.digest) {
      throw new IntegrityError(
        'BP_SOURCE_CHANGED',
        `the source's stream digest ${sourceDigest.slice(0, 16)}… differs from the complete stream's ${final.digest.slice(0, 16)}… at ${store.description}: nothing was written`,
      );
    }
    await options.sourceExit;
  } finally {
    await reader.close().catch(() => {});
  }
  const seconds = (performance.now() - started) / 1000;
  return {
    streamId: manifest.streamId,
    chunks: final.chunks,
    rawBytes: final.rawBytes,
    storedBytes: manifest.storedBytes,
    digest: final.digest,
    seconds,
    resumedFrom: final.chunks,
    chunksUploaded: 0,
    verifySeconds: seconds,
    tookOver: { sender: manifest.sender, state: 'complete', heartbeatAgeMs: target.heartbeatAgeMs },
  };
}
