import { formatBytes, formatRate } from '@bucketpipe/core';

/**
 * Human progress on stderr: a live line redrawn on a TTY, and otherwise only state changes
 * ("waiting for …") as plain lines, so that logs stay readable. The final summary is one JSON line.
 */
export class ProgressReporter {
  #tty: boolean;
  #started = performance.now();
  #line = '';
  #lastDraw = 0;
  #waitingFor: string | null = null;
  #waitTimer: NodeJS.Timeout | undefined;
  #quiet: boolean;

  constructor(options: { quiet?: boolean } = {}) {
    this.#tty = process.stderr.isTTY === true;
    this.#quiet = options.quiet ?? false;
  }

  get elapsedSeconds(): number {
    return (performance.now() - this.#started) / 1000;
  }

  /** Redraws the live line at most 4 times a second (TTY only). */
  update(render: (elapsedSeconds: number) => string): void {
    if (!this.#tty || this.#quiet) return;
    const now = performance.now();
    if (now - this.#lastDraw < 250) return;
    this.#lastDraw = now;
    this.#draw(render(this.elapsedSeconds));
  }

  /**
   * Says what we are waiting for once the wait has lasted a moment, and again every half minute
   * while it lasts: a receiver that keeps up with a live sender waits briefly for every chunk,
   * and that should not print a line per chunk.
   */
  waiting(what: string | null): void {
    if (what === this.#waitingFor) return;
    this.#waitingFor = what;
    clearInterval(this.#waitTimer);
    this.#waitTimer = undefined;
    if (what === null || this.#quiet) return;
    const say = () => this.message(`waiting for ${what}`);
    this.#waitTimer = setTimeout(() => {
      say();
      this.#waitTimer = setInterval(say, 30_000).unref();
    }, 2000).unref();
  }

  message(text: string): void {
    this.#clear();
    process.stderr.write(`bucketpipe: ${text}\n`);
  }

  summary(fields: Record<string, unknown>): void {
    this.#clear();
    process.stderr.write(`${JSON.stringify({ event: 'summary', ...fields })}\n`);
  }

  #draw(line: string): void {
    const padded = line.length < this.#line.length ? line.padEnd(this.#line.length) : line;
    process.stderr.write(`\r${padded}`);
    this.#line = line;
  }

  #clear(): void {
    if (this.#line === '') return;
    process.stderr.write(`\r${' '.repeat(this.#line.length)}\r`);
    this.#line = '';
  }
}

export function describeTransfer(bytes: number, seconds: number): string {
  return `${formatBytes(bytes)} at ${formatRate(bytes, seconds)}`;
}

/** "stored is 37% of raw: compression, not loss". */
export function describeRatio(rawBytes: number, storedBytes: number): string {
  if (rawBytes === 0) return 'nothing stored yet';
  const percent = Math.round((storedBytes / rawBytes) * 100);
  return `stored is ${percent}% of raw (${(rawBytes / Math.max(1, storedBytes)).toFixed(2)}x): compression, not loss`;
}
