import { hostname } from 'node:os';
import { type ReceiverCursor, receiverKey } from '../protocol/receiver-cursor.js';
import type { ObjectStore } from '../store/store.js';

/**
 * Publishes the receiver's position at receivers/<id>.json at most once per interval. Publishing
 * is advisory (it feeds `inspect`): a store that refuses the write, e.g. with read-only
 * credentials, turns it off after one warning and the transfer goes on.
 */
export class CursorPublisher {
  #store: ObjectStore;
  #cursor: ReceiverCursor;
  #intervalMs: number;
  #timer: NodeJS.Timeout | undefined;
  #writing: Promise<void> | undefined;
  #dirty = false;
  #disabled = false;
  #onWarning: (message: string) => void;

  constructor(store: ObjectStore, receiverId: string, options: { intervalMs: number; onWarning?: (message: string) => void }) {
    this.#store = store;
    this.#intervalMs = options.intervalMs;
    this.#onWarning = options.onWarning ?? (() => {});
    const now = new Date().toISOString();
    this.#cursor = {
      format: 'bucketpipe.receiver',
      version: 1,
      receiverId,
      streamId: null,
      host: hostname(),
      pid: process.pid,
      startedAt: now,
      updatedAt: now,
      position: 0,
      rawBytes: 0,
      state: 'waiting',
    };
  }

  get cursor(): Readonly<ReceiverCursor> {
    return this.#cursor;
  }

  start(patch: Partial<ReceiverCursor>): void {
    this.set(patch);
    this.#flushSoon();
    this.#timer = setInterval(() => this.#flushSoon(), this.#intervalMs);
    this.#timer.unref();
  }

  set(patch: Partial<ReceiverCursor>): void {
    this.#cursor = { ...this.#cursor, ...patch };
    this.#dirty = true;
  }

  async finish(patch: Partial<ReceiverCursor>): Promise<void> {
    this.stop();
    await this.#writing;
    this.set(patch);
    if (this.#cursor.streamId !== null) await this.#write();
  }

  stop(): void {
    clearInterval(this.#timer);
  }

  #flushSoon(): void {
    if (this.#writing || !this.#dirty) return;
    this.#writing = this.#write().finally(() => {
      this.#writing = undefined;
    });
  }

  async #write(): Promise<void> {
    if (this.#disabled) return;
    this.#dirty = false;
    const cursor = { ...this.#cursor, updatedAt: new Date().toISOString() };
    try {
      await this.#store.put(receiverKey(cursor.receiverId), Buffer.from(`${JSON.stringify(cursor, null, 2)}\n`));
    } catch (error) {
      this.#disabled = true;
      this.#onWarning(
        `cannot publish this receiver's position to ${this.#store.description} (${error instanceof Error ? error.message : String(error)}): going on without it; inspect will not show this receiver`,
      );
    }
  }
}
