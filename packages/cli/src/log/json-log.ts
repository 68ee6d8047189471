import { hostname } from 'node:os';
import { type BucketpipeError, ExitCode } from '@bucketpipe/core';
import { type DestinationStream, type Logger, pino } from 'pino';
import type { Log, LogFields } from './log.js';

/**
 * One JSON object per line (pino): `level` as a label, ISO `time`, `pid`, `hostname`, the
 * `command`, the `event`, its fields and `msg`, the same sentence the human format prints. Written
 * synchronously to stderr by default, so that the lines before process.exit are not lost.
 */
export class JsonLog implements Log {
  readonly format = 'json';
  readonly live = false;
  #logger: Logger;
  #command: string | undefined;

  constructor(command: string | undefined, destination: DestinationStream = pino.destination({ dest: 2, sync: true })) {
    this.#command = command;
    this.#logger = pino(
      {
        base: { pid: process.pid, hostname: hostname() },
        timestamp: pino.stdTimeFunctions.isoTime,
        formatters: { level: (label) => ({ level: label }) },
      },
      destination,
    );
  }

  info(event: string, text: string, fields: LogFields = {}): void {
    this.#logger.info(this.#fields(event, fields), text);
  }

  warn(event: string, text: string, fields: LogFields = {}): void {
    this.#logger.warn(this.#fields(event, fields), text);
  }

  commandOutput(command: string, line: string): void {
    this.#logger.info(this.#fields('command-output', { from: command }), line);
  }

  failure(error: BucketpipeError): void {
    this.#logger.error(this.#fields('error', { code: error.code, exitCode: error.exitCode }), error.message);
  }

  bug(error: unknown): void {
    const message = error instanceof Error ? error.message : String(error);
    const stack = error instanceof Error ? error.stack : undefined;
    this.#logger.error(
      this.#fields('error', { code: 'BP_INTERNAL', exitCode: ExitCode.bug, stack }),
      `internal error (this is a bug; please report it with its stack): ${message}`,
    );
  }

  status(): void {}

  /** `command` and `event` first; a field of the same name (a summary's `command`) overrides, never duplicates. */
  #fields(event: string, fields: LogFields): LogFields {
    return { ...(this.#command === undefined ? {} : { command: this.#command }), event, ...fields };
  }
}
