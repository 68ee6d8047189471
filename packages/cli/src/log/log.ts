import type { BucketpipeError } from '@bucketpipe/core';
import type { LogFormat } from './log-format.js';

export type LogFields = Record<string, unknown>;

/**
 * Everything bucketpipe says on stderr goes through one Log: human lines (HumanLog) or JSON events
 * (JsonLog). `event` names what happened (waiting, progress, summary, …) for the JSON format; the
 * human format shows only the text.
 */
export interface Log {
  readonly format: LogFormat;
  /** True when a live status line is drawn: the human format on a terminal. */
  readonly live: boolean;
  info(event: string, text: string, fields?: LogFields): void;
  warn(event: string, text: string, fields?: LogFields): void;
  /** A line a source or sink command wrote on its stderr: as it wrote it (human), or as an event naming the command (JSON). */
  commandOutput(command: string, line: string): void;
  /** A failure bucketpipe knows: one line, with its code. */
  failure(error: BucketpipeError): void;
  /** Anything else is a bug: said with its stack. */
  bug(error: unknown): void;
  /** Redraws the live status line; ignored unless `live`. */
  status(line: string): void;
}
