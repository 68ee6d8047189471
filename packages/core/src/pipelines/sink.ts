/** Where the receiver delivers the stream: a command's stdin, stdout, a file. Implemented by the CLI. */
export interface Sink {
  /** Human-readable name for messages, e.g. "zfs recv -F tank/pgdata". */
  readonly description: string;
  /** Resolves once the sink has taken the bytes; the caller may then reuse the buffer. */
  write(bytes: Uint8Array): Promise<void>;
  /** Ends the sink's input and resolves when it has taken everything (a command exited 0). */
  finish(): Promise<void>;
  /** Stops the sink before it can see end-of-input: a command is killed first, then its stdin closed. */
  abort(): Promise<void>;
  /** Rejects with a SinkFailedError as soon as the sink fails on its own; never resolves. */
  readonly failure: Promise<never>;
}
