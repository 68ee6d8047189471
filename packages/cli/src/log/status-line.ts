/** The part of a terminal stream the status line needs (process.stderr, or a fake in tests). */
export interface TextStream {
  write(text: string): unknown;
  readonly isTTY?: boolean;
  /** Terminal width in characters, when known. */
  readonly columns?: number;
}

/**
 * One line redrawn in place with `\r` at the bottom of a terminal, cleared before any other line
 * is written. It is cut to the terminal's width: a line that wraps cannot be redrawn in place.
 */
export class StatusLine {
  #out: TextStream;
  #shown = '';

  constructor(out: TextStream) {
    this.#out = out;
  }

  draw(line: string): void {
    const width = this.#out.columns ?? 0;
    const fitted = width > 1 && line.length > width - 1 ? `${line.slice(0, width - 2)}…` : line;
    const padded = fitted.length < this.#shown.length ? fitted.padEnd(this.#shown.length) : fitted;
    this.#out.write(`\r${padded}`);
    this.#shown = fitted;
  }

  clear(): void {
    if (this.#shown === '') return;
    this.#out.write(`\r${' '.repeat(this.#shown.length)}\r`);
    this.#shown = '';
  }
}
