import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import { BucketpipeError, ExitCode, IntegrityError } from '../errors.js';
import type { CodecJob, CodecResult, DecodeJob, DecodeResult, EncodeJob, EncodeResult, WorkerReply } from './codec-jobs.js';

interface Pending {
  resolve: (result: never) => void;
  reject: (error: Error) => void;
  /** The job's views of shared buffers, by result field: the result's views are put back on these buffers. */
  shared: Partial<Record<BufferField, Uint8Array>>;
}

type BufferField = 'raw' | 'out' | 'object';

interface Slot {
  worker: Worker;
  busy: boolean;
}

/**
 * Runs compression and verification on worker threads, one job per worker at a time, so that
 * every core works on chunks while the main thread only moves bytes. A job's buffers come back in
 * the result: views of a SharedArrayBuffer (the slab pools') are shared with the worker and come
 * back as views of the caller's own SharedArrayBuffer object; other buffers are transferred (the
 * caller's views become empty).
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
    return this.#submit({ kind: 'encode', ...job }, ['raw', 'out']);
  }

  decode(job: Omit<DecodeJob, 'kind'>): Promise<DecodeResult> {
    return this.#submit({ kind: 'decode', ...job }, ['raw', 'object']);
  }

  async close(): Promise<void> {
    this.#closing = true;
    await Promise.all(this.#slots.map((slot) => slot.worker.terminate()));
  }

  /** `job` is the pool's own copy: a view it must transfer may be replaced in it by a copy the view's buffer does not share. */
  #submit<T>(job: CodecJob, fields: BufferField[]): Promise<T> {
    if (this.#failure) return Promise.reject(this.#failure);
    const views = job as unknown as Record<BufferField, Uint8Array>;
    const shared: Pending['shared'] = {};
    const transfer = new Set<ArrayBuffer>();
    for (const field of fields) {
      const view = views[field];
      if (view.buffer instanceof SharedArrayBuffer) {
        shared[field] = view;
        continue;
      }
      const owned = transferable(view);
      views[field] = owned;
      transfer.add(owned.buffer as ArrayBuffer);
    }
    const id = this.#nextId++;
    const promise = new Promise<T>((resolve, reject) => {
      this.#pending.set(id, { resolve: resolve as (r: never) => void, reject, shared });
    });
    this.#queue.push({ id, job, transfer: [...transfer] });
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
      if ('result' in reply) pending.resolve(onCallersBuffers(reply.result, pending.shared) as never);
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

/**
 * A shared buffer arrives from the worker as a new SharedArrayBuffer object over the same memory:
 * view the caller's own object instead, so that pools can tell their buffers by identity.
 */
function onCallersBuffers(result: CodecResult, shared: Pending['shared']): CodecResult {
  const fields = result as unknown as Record<BufferField, Uint8Array | undefined>;
  for (const [field, original] of Object.entries(shared) as Array<[BufferField, Uint8Array]>) {
    const view = fields[field];
    if (view !== undefined) fields[field] = new Uint8Array(original.buffer, view.byteOffset, view.length);
  }
  return result;
}

/**
 * A transfer moves a whole ArrayBuffer: a view into a larger one (a slice of Node's Buffer pool,
 * say) is copied into one of its own first, so that no unrelated bytes are detached with it.
 */
function transferable(view: Uint8Array): Uint8Array {
  if (view.buffer.byteLength === 0) throw new TypeError('buffer handed to the codec pool is detached or empty');
  if (view.byteOffset === 0 && view.byteLength === view.buffer.byteLength) return view;
  const copy = new Uint8Array(new ArrayBuffer(view.byteLength));
  copy.set(view);
  return copy;
}

function workerUrl(): URL {
  // Tests run the TypeScript sources; the worker itself always runs from the compiled output.
  const fromSource = import.meta.url.endsWith('.ts');
  return new URL(fromSource ? '../../dist/codec/codec-worker.js' : './codec-worker.js', import.meta.url);
}
