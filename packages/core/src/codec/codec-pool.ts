import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import { BucketpipeError, ExitCode, IntegrityError } from '../errors.js';
import type { CodecJob, DecodeJob, DecodeResult, EncodeJob, EncodeResult, WorkerReply } from './codec-jobs.js';

interface Pending {
  resolve: (result: never) => void;
  reject: (error: Error) => void;
}

interface Slot {
  worker: Worker;
  busy: boolean;
}

/**
 * Runs compression and verification on worker threads, one job per worker at a time, so that
 * every core works on chunks while the main thread only moves bytes. Buffers given to a job are
 * transferred (the caller's views become empty) and come back in the result.
 */
export class CodecPool {
  readonly size: number;
  #slots: Slot[] = [];
  #queue: Array<{ id: number; job: CodecJob; transfer: ArrayBuffer[] }> = [];
  #pending = new Map<number, Pending & { slot?: Slot }>();
  #nextId = 0;
  #failure: Error | undefined;

  constructor(size = availableParallelism()) {
    if (!Number.isInteger(size) || size < 1) throw new TypeError(`CodecPool size must be a positive integer, got ${size}`);
    this.size = size;
    const url = workerUrl();
    for (let i = 0; i < size; i++) {
      // Own stdout/stderr streams: by default a worker's output is forwarded through the parent's
      // process.stdout, and creating that stream switches fd 1 to non-blocking mode, which breaks
      // the receiver's direct writes to a stdout pipe (EAGAIN) and leaks the mode to the reader.
      const worker = new Worker(url, { stdout: true, stderr: true });
      worker.stdout.resume();
      worker.stderr.on('data', (text: Buffer) => process.stderr.write(text));
      const slot: Slot = { worker, busy: false };
      worker.on('message', (reply: WorkerReply) => this.#onReply(slot, reply));
      worker.on('error', (error) => this.#fail(error));
      worker.on('exit', (code) => {
        if (!this.#closing) this.#fail(new Error(`codec worker exited unexpectedly with code ${code}`));
      });
      this.#slots.push(slot);
    }
  }

  #closing = false;

  encode(job: Omit<EncodeJob, 'kind'>): Promise<EncodeResult> {
    return this.#submit({ kind: 'encode', ...job }, [job.raw.buffer as ArrayBuffer, job.out.buffer as ArrayBuffer]);
  }

  decode(job: Omit<DecodeJob, 'kind'>): Promise<DecodeResult> {
    return this.#submit({ kind: 'decode', ...job }, [job.raw.buffer as ArrayBuffer, job.object.buffer as ArrayBuffer]);
  }

  async close(): Promise<void> {
    this.#closing = true;
    await Promise.all(this.#slots.map((slot) => slot.worker.terminate()));
  }

  #submit<T>(job: CodecJob, transfer: ArrayBuffer[]): Promise<T> {
    if (this.#failure) return Promise.reject(this.#failure);
    for (const buffer of transfer) assertTransferable(buffer);
    const id = this.#nextId++;
    const promise = new Promise<T>((resolve, reject) => {
      this.#pending.set(id, { resolve: resolve as (r: never) => void, reject });
    });
    this.#queue.push({ id, job, transfer: [...new Set(transfer)] });
    this.#dispatch();
    return promise;
  }

  #dispatch(): void {
    for (const slot of this.#slots) {
      if (slot.busy) continue;
      const next = this.#queue.shift();
      if (!next) return;
      slot.busy = true;
      const pending = this.#pending.get(next.id);
      if (pending) pending.slot = slot;
      slot.worker.postMessage({ id: next.id, job: next.job }, next.transfer);
    }
  }

  #onReply(slot: Slot, reply: WorkerReply): void {
    slot.busy = false;
    const pending = this.#pending.get(reply.id);
    this.#pending.delete(reply.id);
    if (pending) {
      if ('result' in reply) pending.resolve(reply.result as never);
      else {
        const { code, message, integrity } = reply.failure;
        pending.reject(integrity ? new IntegrityError(code, message) : new BucketpipeError(code, message, ExitCode.bug));
      }
    }
    this.#dispatch();
  }

  #fail(error: Error): void {
    this.#failure ??= error;
    for (const pending of this.#pending.values()) pending.reject(error);
    this.#pending.clear();
    this.#queue.length = 0;
  }
}

/** Transferring a view of a shared pool buffer would detach unrelated Buffers: refuse it. */
function assertTransferable(buffer: ArrayBuffer): void {
  if (buffer.byteLength === 0) throw new TypeError('buffer handed to the codec pool is detached or empty');
}

function workerUrl(): URL {
  // Tests run the TypeScript sources; the worker itself always runs from the compiled output.
  const fromSource = import.meta.url.endsWith('.ts');
  return new URL(fromSource ? '../../dist/codec/codec-worker.js' : './codec-worker.js', import.meta.url);
}
