import { setTimeout as sleep } from 'node:timers/promises';
import { type ChunkReader, IterableChunkReader, isChunkReader, SourceFailedError } from '@bucketpipe/core';
import { endsWhole, RECORD_BYTES, readBegin, type StreamBegin } from './stream-records.js';

/** How long a cut-short source's command may take to report its exit status. */
const EXIT_GRACE_MS = 2000;

const TAIL_BYTES = 2 * RECORD_BYTES;

export interface StreamEndCheckOptions {
  /** What the source is, for messages ("stdin", the command line). */
  description: string;
  /**
   * The source must be a ZFS send stream (the replication daemons run zfs send themselves): an
   * empty source or bytes without a BEGIN record fail too. Without it, other bytes pass unchecked.
   */
  required?: boolean;
  /**
   * Settles when the command producing the bytes has exited (rejecting when it failed): a source
   * cut short because its command failed is reported by that failure, which says more.
   */
  exit?: Promise<void>;
}

/**
 * A source that never looks finished when it is not: reads through `source` and, when the bytes
 * begin with a ZFS send stream's BEGIN record, fails at end of input (SourceFailedError
 * BP_SOURCE_TRUNCATED, so the sender marks the stream aborted instead of complete) unless they end
 * with that stream's END record. What it keeps: the first record and the last 624 bytes; per fill,
 * a copy of at most 624 bytes.
 *
 * It catches a `zfs send` cut short anywhere — mid-record or on a record boundary — including a
 * pipe (`zfs send | … | bucketpipe send`) whose producer died, which no exit status reports. It does
 * not verify the stream's checksums: `zfs recv` does, and only ever sees verified chunks.
 */
export class StreamEndCheck implements ChunkReader {
  readonly #source: ChunkReader;
  readonly #options: StreamEndCheckOptions;
  #head = new Uint8Array(RECORD_BYTES);
  #headLength = 0;
  #begin: StreamBegin | null | undefined;
  #tail = new Uint8Array(TAIL_BYTES);
  #tailLength = 0;
  #total = 0;

  constructor(source: ChunkReader | AsyncIterable<Uint8Array>, options: StreamEndCheckOptions) {
    this.#source = isChunkReader(source) ? source : new IterableChunkReader(source);
    this.#options = options;
  }

  async fill(target: Uint8Array, size: number, signal?: AbortSignal): Promise<number> {
    const got = await this.#source.fill(target, size, signal);
    this.#observe(target.subarray(0, got));
    if (got < size) {
      const problem = this.#problemAtEnd();
      if (problem) {
        // The command's own failure, when it comes within a moment, names the cause better.
        await Promise.race([this.#options.exit, sleep(EXIT_GRACE_MS)]);
        throw problem;
      }
    }
    return got;
  }

  close(): Promise<void> {
    return this.#source.close();
  }

  #observe(bytes: Uint8Array): void {
    this.#total += bytes.length;
    if (this.#headLength < RECORD_BYTES) {
      const take = Math.min(RECORD_BYTES - this.#headLength, bytes.length);
      this.#head.set(bytes.subarray(0, take), this.#headLength);
      this.#headLength += take;
      if (this.#headLength === RECORD_BYTES) this.#begin = readBegin(this.#head);
    }
    if (bytes.length >= TAIL_BYTES) {
      this.#tail.set(bytes.subarray(bytes.length - TAIL_BYTES));
      this.#tailLength = TAIL_BYTES;
    } else if (bytes.length > 0) {
      const keep = Math.min(this.#tailLength, TAIL_BYTES - bytes.length);
      this.#tail.copyWithin(0, this.#tailLength - keep, this.#tailLength);
      this.#tail.set(bytes, keep);
      this.#tailLength = keep + bytes.length;
    }
  }

  #problemAtEnd(): SourceFailedError | undefined {
    const { description } = this.#options;
    const begin = this.#begin ?? null;
    if (begin === null) {
      if (!this.#options.required) return undefined;
      return new SourceFailedError(
        'BP_SOURCE_NOT_ZFS',
        this.#total === 0
          ? `${description} gave no bytes at all, where a ZFS send stream was expected: the stream was marked aborted`
          : `${description} is not a ZFS send stream (no BEGIN record in its first ${RECORD_BYTES} bytes): the stream was marked aborted`,
      );
    }
    if (endsWhole(begin, this.#tail.subarray(0, this.#tailLength))) return undefined;
    return new SourceFailedError(
      'BP_SOURCE_TRUNCATED',
      `${description} ended after ${this.#total} bytes without the END record of the ZFS send stream of ${begin.toName || 'its snapshot'} it began as: the stream is cut short (zfs send died, or the pipe was cut) and was marked aborted, not complete; send it again`,
    );
  }
}
