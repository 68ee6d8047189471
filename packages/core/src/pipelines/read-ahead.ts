/**
 * How many chunks a receive keeps downloaded or downloading ahead of its sink: as few as keep the
 * codec threads fed, more only once the sink had to wait for a download.
 *
 * Every chunk held ahead occupies an object buffer, and each buffer's pages cost a page fault when
 * first written: a store that answers at once (a local directory, a fast network) filled the whole
 * memory window ahead although a few chunks kept the decoders busy. Far (a slow link, tens of
 * milliseconds a request) the window is what keeps enough downloads in flight. So the limit starts
 * low and doubles, up to the window, each time the sink waits for a chunk that is still
 * downloading although the limit had held its download back: a download started late cost time.
 * A chunk started as soon as it was known (the receiver is following a live sender) says nothing
 * about the limit and does not raise it. It never shrinks: a path that was slow once may be again.
 */
export class ReadAhead {
  #limit: number;
  /** Chunks below this index were known when the limit last held downloads back. */
  #knownWhenHeld = 0;
  /** Chunks ahead still downloading that started later than they could have, because of the limit. */
  readonly #startedLate = new Set<number>();

  constructor(
    initial: number,
    readonly max: number,
  ) {
    if (!Number.isSafeInteger(max) || max < 1) throw new RangeError(`read-ahead maximum must be a positive integer, got ${max}`);
    if (!Number.isSafeInteger(initial) || initial < 1) throw new RangeError(`read-ahead must start at a positive integer, got ${initial}`);
    this.#limit = Math.min(initial, max);
  }

  /** Chunks ahead of the sink (downloaded or downloading) allowed now. */
  get limit(): number {
    return this.#limit;
  }

  /** The limit stopped the downloads from starting while the chunks below `known` were known to exist. */
  heldBack(known: number): void {
    this.#knownWhenHeld = Math.max(this.#knownWhenHeld, known);
  }

  /** The download of chunk `index` starts now. */
  started(index: number): void {
    if (index < this.#knownWhenHeld) this.#startedLate.add(index);
  }

  /** The object of chunk `index` is in memory. */
  downloaded(index: number): void {
    this.#startedLate.delete(index);
  }

  /** The sink waits for chunk `index`; true if that raised the limit (its download, started late, is still running). */
  sinkWaitsFor(index: number): boolean {
    if (!this.#startedLate.has(index) || this.#limit === this.max) return false;
    this.#limit = Math.min(this.max, this.#limit * 2);
    return true;
  }
}
