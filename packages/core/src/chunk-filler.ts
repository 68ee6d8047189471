import { raceAbort } from './abort.js';

/** Cuts an arbitrary byte stream into fixed-size chunks, copying each byte once into the target. */
export class ChunkFiller {
  #iterator: AsyncIterator<Uint8Array>;
  #pending: Uint8Array | undefined;
  #ended = false;

  constructor(source: AsyncIterable<Uint8Array>) {
    this.#iterator = source[Symbol.asyncIterator]();
  }

  /** Fills target[0, size) and returns how many bytes it got: fewer only at end of input. */
  async fill(target: Uint8Array, size: number, signal?: AbortSignal): Promise<number> {
    let filled = 0;
    while (filled < size) {
      if (!this.#pending) {
        if (this.#ended) break;
        const next = await raceAbort(this.#iterator.next(), signal);
        if (next.done) {
          this.#ended = true;
          break;
        }
        this.#pending = next.value;
        if (this.#pending.length === 0) {
          this.#pending = undefined;
          continue;
        }
      }
      const take = Math.min(this.#pending.length, size - filled);
      target.set(take === this.#pending.length ? this.#pending : this.#pending.subarray(0, take), filled);
      filled += take;
      this.#pending = take < this.#pending.length ? this.#pending.subarray(take) : undefined;
    }
    return filled;
  }

  /** Stops the underlying source (e.g. destroys the stream) when we give up early. */
  async close(): Promise<void> {
    await this.#iterator.return?.();
  }
}
