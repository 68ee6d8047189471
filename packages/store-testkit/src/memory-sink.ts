import type { Sink } from '@bucketpipe/core';

/**
 * A Sink that keeps what it is given, for receiver tests: it records every write (as a copy, since
 * the receiver reuses its buffers), whether finish() and abort() were called, and can be held
 * (writes wait until released: a slow `zfs recv`) or made to fail on its own.
 */
export class MemorySink implements Sink {
  readonly description: string;
  readonly failure: Promise<never>;
  readonly #writes: Uint8Array[] = [];
  #bytes = 0;
  #finished = false;
  #aborted = false;
  #gate: Promise<void> | undefined;
  #release: (() => void) | undefined;
  #fail: (error: unknown) => void = () => {};
  /** Called after each write has been recorded, with the total bytes so far. */
  onWrite: ((totalBytes: number) => void) | undefined;

  constructor(description = 'memory sink') {
    this.description = description;
    this.failure = new Promise<never>((_, reject) => {
      this.#fail = reject;
    });
    this.failure.catch(() => {}); // whoever watches it gets the rejection; nobody watching is fine
  }

  get finished(): boolean {
    return this.#finished;
  }

  get aborted(): boolean {
    return this.#aborted;
  }

  /** Number of write() calls that completed. */
  get writes(): number {
    return this.#writes.length;
  }

  get byteLength(): number {
    return this.#bytes;
  }

  /** Everything written so far, in order. */
  bytes(): Buffer {
    return Buffer.concat(this.#writes);
  }

  /** Makes writes wait until release() (the one in progress, if any, completes first). */
  hold(): void {
    if (this.#gate) return;
    this.#gate = new Promise<void>((resolve) => {
      this.#release = resolve;
    });
  }

  release(): void {
    this.#release?.();
    this.#gate = undefined;
    this.#release = undefined;
  }

  /** The sink fails on its own (e.g. `zfs recv` exited 1): `failure` rejects with `error`. */
  fail(error: unknown): void {
    this.#fail(error);
  }

  async write(bytes: Uint8Array): Promise<void> {
    if (this.#finished || this.#aborted) throw new Error(`write after ${this.#finished ? 'finish' : 'abort'} of ${this.description}`);
    while (this.#gate) await this.#gate;
    this.#writes.push(Uint8Array.from(bytes));
    this.#bytes += bytes.length;
    this.onWrite?.(this.#bytes);
  }

  async finish(): Promise<void> {
    if (this.#aborted) throw new Error(`finish after abort of ${this.description}`);
    this.#finished = true;
  }

  async abort(): Promise<void> {
    this.#aborted = true;
    this.release();
  }
}
