/** Chunks finish out of order; the watermark is the first index not yet finished. */
export class Watermark {
  #next = 0;
  #rawBytes = 0;
  #storedBytes = 0;
  #finished = new Map<number, { rawBytes: number; storedBytes: number }>();

  get value(): number {
    return this.#next;
  }
  /** Raw and stored bytes of the chunks below the watermark. */
  get rawBytes(): number {
    return this.#rawBytes;
  }
  get storedBytes(): number {
    return this.#storedBytes;
  }

  finish(index: number, rawBytes: number, storedBytes: number): void {
    if (index < this.#next || this.#finished.has(index)) throw new Error(`chunk ${index} finished twice`);
    this.#finished.set(index, { rawBytes, storedBytes });
    for (let done = this.#finished.get(this.#next); done; done = this.#finished.get(this.#next)) {
      this.#finished.delete(this.#next);
      this.#rawBytes += done.rawBytes;
      this.#storedBytes += done.storedBytes;
      this.#next++;
    }
  }
}
