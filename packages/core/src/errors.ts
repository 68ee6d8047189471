/**
 * Every failure bucketpipe expects carries a stable `code` and the process exit status it maps to.
 * Messages are one line: what went wrong, naming the thing, and what to do about it.
 */

/** Process exit statuses, documented in the README. */
export const ExitCode = {
  ok: 0,
  bug: 1,
  usage: 2,
  store: 3,
  conflict: 4,
  integrity: 5,
  sourceFailed: 6,
  sinkFailed: 7,
  interrupted: 130,
} as const;
export type ExitCode = (typeof ExitCode)[keyof typeof ExitCode];

export class BucketpipeError extends Error {
  readonly code: string;
  readonly exitCode: ExitCode;

  constructor(code: string, message: string, exitCode: ExitCode, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
    this.code = code;
    this.exitCode = exitCode;
  }
}

/** Bad command line, option value or URL. */
export class UsageError extends BucketpipeError {
  constructor(message: string, code = 'BP_USAGE') {
    super(code, message, ExitCode.usage);
  }
}

/** The stream in the store is not what this process may act on (another sender, another stream, bad manifest). */
export class StreamConflictError extends BucketpipeError {
  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(code, message, ExitCode.conflict, options);
  }
}

/** Stored bytes failed verification: nothing of them reached the sink. */
export class IntegrityError extends BucketpipeError {
  constructor(code: string, message: string) {
    super(code, message, ExitCode.integrity);
  }
}

/** The source command failed, or the sender marked the stream aborted. */
export class SourceFailedError extends BucketpipeError {
  constructor(code: string, message: string) {
    super(code, message, ExitCode.sourceFailed);
  }
}

/** The sink command failed or went away before the stream ended. */
export class SinkFailedError extends BucketpipeError {
  constructor(code: string, message: string) {
    super(code, message, ExitCode.sinkFailed);
  }
}

/** SIGINT/SIGTERM stopped the work. */
export class InterruptedError extends BucketpipeError {
  constructor(signal: string) {
    super('BP_INTERRUPTED', `interrupted by ${signal}`, ExitCode.interrupted);
  }
}
