import type { BucketpipeError } from '@bucketpipe/core';
import type { Log } from './log.js';
import { StatusLine, type TextStream } from './status-line.js';

/** `bucketpipe: …` lines on stderr; on a terminal also the live status line, cleared before each of them. */
export class HumanLog implements Log {
  readonly format = 'human';
  readonly live: boolean;
  #out: TextStream;
  #status: StatusLine | undefined;

  constructor(out: TextStream) {
    this.#out = out;
    this.live = out.isTTY === true;
    this.#status = this.live ? new StatusLine(out) : undefined;
  }

  info(_event: string, text: string): void {
    this.#line(`bucketpipe: ${text}`);
  }

  warn(_event: string, text: string): void {
    this.#line(`bucketpipe: warning: ${text}`);
  }

  commandOutput(_command: string, line: string): void {
    this.#line(line);
  }

  failure(error: BucketpipeError): void {
    this.#line(`bucketpipe: error: ${error.message} [${error.code}]`);
  }

  bug(error: unknown): void {
    const stack = error instanceof Error ? (error.stack ?? error.message) : String(error);
    this.#line(`bucketpipe: internal error (this is a bug; please report it with the lines below)\n${stack}`);
  }

  status(line: string): void {
    this.#status?.draw(line);
  }

  #line(text: string): void {
    this.#status?.clear();
    this.#out.write(`${text}\n`);
  }
}
