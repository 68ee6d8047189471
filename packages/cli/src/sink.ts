import { type ChildProcess, spawn } from 'node:child_process';
import { constants, fstatSync, fsync, ftruncate, readFileSync, write } from 'node:fs';
import { type FileHandle, open } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import { type ResumableOutput, type Sink, SinkFailedError, UsageError } from '@bucketpipe/core';
import { describeCommand, describeExit } from './command-line.js';
import { type CommandOutput, readCommandStderr } from './command-stderr.js';

const writeAsync = promisify(write);
const fsyncAsync = promisify(fsync);
const ftruncateAsync = promisify(ftruncate);

/** A sink that may already hold the start of the stream from an earlier run, and can resume after it. */
export interface OutputSink extends Sink {
  /** What it holds now, to be verified (checkReceivedPrefix); null when it cannot be resumed: a pipe, a terminal, empty. */
  readonly existing: ResumableOutput | null;
  /** Cuts it to `length` bytes, the verified start; writes continue there. Only after verifying `existing`. */
  truncate(length: number): Promise<void>;
}

/**
 * Writes into a command's stdin. The command runs in its own process group so that on failure we
 * can kill it (and whatever it spawned) *before* closing its stdin: `zfs recv` must never see
 * end-of-input for a stream that did not arrive whole.
 */
export async function commandSink(argv: string[], output: CommandOutput): Promise<Sink> {
  const [file, ...args] = argv;
  if (file === undefined) throw new UsageError('missing sink command after --');
  const description = describeCommand(argv);
  const child: ChildProcess = spawn(file, args, { stdio: ['pipe', 'inherit', 'pipe'], detached: true });
  if (!child.stderr) throw new Error('bug: sink command has no stderr pipe');
  const said = readCommandStderr(child.stderr, description, output);
  await new Promise<void>((resolve, reject) => {
    child.once('spawn', resolve);
    child.once('error', (error: NodeJS.ErrnoException) =>
      reject(
        new SinkFailedError(
          'BP_SINK_START',
          `cannot run sink command "${description}": ${error.code === 'ENOENT' ? 'command not found' : error.message}; check the command and PATH`,
        ),
      ),
    );
  });
  const stdin = child.stdin;
  if (!stdin) throw new Error('bug: sink command has no stdin pipe');
  stdin.on('error', () => {}); // EPIPE surfaces through write callbacks and the exit status
  let finishing = false;
  let aborting = false;
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once('exit', (code, signal) => resolve({ code, signal })),
  );
  const failure = exited.then(async ({ code, signal }) => {
    // After finish() or abort() the exit status is theirs to judge: an exit 0 then is success.
    if (aborting || finishing) return new Promise<never>(() => {});
    throw new SinkFailedError(
      'BP_SINK_FAILED',
      `sink command "${description}" ${describeExit(code, signal)} before the stream ended${await said()}`,
    );
  });
  failure.catch(() => {});

  return {
    description,
    failure,
    write: (bytes) =>
      new Promise<void>((resolve, reject) => {
        stdin.write(bytes, (error) => {
          if (!error) return resolve();
          // The exit status says more than EPIPE; give it a moment to arrive.
          const timer = setTimeout(
            () => reject(new SinkFailedError('BP_SINK_FAILED', `cannot write to sink command "${description}": ${error.message}`)),
            2000,
          );
          failure.catch((exitError: unknown) => {
            clearTimeout(timer);
            reject(exitError);
          });
        });
      }),
    finish: async () => {
      finishing = true;
      stdin.end();
      const { code, signal } = await exited;
      if (code !== 0)
        throw new SinkFailedError('BP_SINK_FAILED', `sink command "${description}" ${describeExit(code, signal)}${await said()}`);
    },
    abort: async () => {
      aborting = true;
      if (child.exitCode === null && child.signalCode === null && child.pid !== undefined) {
        try {
          process.kill(-child.pid, 'SIGKILL');
        } catch {
          child.kill('SIGKILL');
        }
        await exited;
      }
      stdin.destroy();
    },
  };
}

/**
 * Writes to a file (--output), which is opened without truncating it: when it already holds bytes
 * (an earlier receive into it was interrupted), they are offered for verification, the file is
 * cut to the verified whole chunks and writing continues after them. Writes are positional, so
 * what lands where does not depend on the file offset. Ends with fsync; a failure leaves the file
 * as far as it got (a verified prefix of the stream) for the next run to resume.
 */
export async function fileSink(path: string): Promise<OutputSink> {
  let handle: FileHandle;
  try {
    handle = await open(path, constants.O_RDWR | constants.O_CREAT, 0o666);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    const why = code === 'ENOENT' ? 'its directory does not exist' : code === 'EISDIR' ? 'it is a directory' : (error as Error).message;
    throw new UsageError(`--output ${path}: cannot open it (${why})`, 'BP_OUTPUT');
  }
  const stats = await handle.stat();
  if (!stats.isFile()) {
    await handle.close();
    throw new UsageError(
      `--output ${path} is not a regular file: --output writes (and resumes) files; for a pipe or device, write to stdout or a command (bucketpipe receive URL -- command)`,
      'BP_OUTPUT',
    );
  }
  const description = path;
  let offset = stats.size;
  let closed = false;
  const close = async () => {
    if (closed) return;
    closed = true;
    await handle.close();
  };
  return {
    description,
    failure: new Promise<never>(() => {}),
    existing:
      stats.size > 0
        ? {
            description,
            length: stats.size,
            read: async (buffer, position) => (await handle.read(buffer, 0, buffer.length, position)).bytesRead,
          }
        : null,
    truncate: async (length) => {
      if (length > offset) throw new Error(`bug: cannot truncate ${path} from ${offset} to ${length} bytes`);
      await handle.truncate(length);
      offset = length;
    },
    write: async (bytes) => {
      try {
        for (let done = 0; done < bytes.length; ) {
          const { bytesWritten } = await handle.write(bytes, done, bytes.length - done, offset);
          done += bytesWritten;
          offset += bytesWritten;
        }
      } catch (error) {
        throw new SinkFailedError('BP_SINK_FAILED', `cannot write to ${path}: ${(error as Error).message}`);
      }
    },
    finish: async () => {
      try {
        await handle.sync();
      } catch (error) {
        throw new SinkFailedError('BP_SINK_FAILED', `cannot write to ${path}: ${(error as Error).message}`);
      } finally {
        await close();
      }
    },
    abort: close,
  };
}

/**
 * Writes to our stdout through the thread pool (never blocking the event loop on a slow reader).
 * When stdout is a regular file opened for appending that already holds bytes (`>> file`, the
 * same command run again after an interruption), it is resumable like --output: appending the
 * whole stream again would duplicate its start. A pipe or a terminal starts at chunk 0.
 */
export function stdoutSink(): OutputSink {
  const fd = 1;
  const existing = appendedStdout(fd);
  return {
    description: 'stdout',
    failure: new Promise<never>(() => {}),
    existing: existing?.output ?? null,
    truncate: async (length) => {
      await existing?.close();
      if (existing) await ftruncateAsync(fd, length);
    },
    write: async (bytes) => {
      let offset = 0;
      let backoffMs = 0;
      while (offset < bytes.length) {
        try {
          const { bytesWritten } = await writeAsync(fd, bytes, offset, bytes.length - offset);
          offset += bytesWritten;
          backoffMs = 0;
        } catch (error) {
          if ((error as NodeJS.ErrnoException).code === 'EAGAIN') {
            // Whoever gave us this pipe made it non-blocking: wait for the reader to make room.
            backoffMs = Math.min(10, backoffMs + 1);
            await sleep(backoffMs);
            continue;
          }
          throw new SinkFailedError(
            'BP_SINK_FAILED',
            `cannot write to stdout: ${(error as NodeJS.ErrnoException).code === 'EPIPE' ? 'the reader closed the pipe (EPIPE)' : (error as Error).message}`,
          );
        }
      }
    },
    finish: async () => {
      await existing?.close();
      if (fstatSync(fd).isFile()) await fsyncAsync(fd);
    },
    abort: async () => {
      await existing?.close();
    },
  };
}

/** Stdout as a resumable output: a regular file that holds bytes and was opened with O_APPEND (Linux: /proc/self/fdinfo). */
function appendedStdout(fd: number): { output: ResumableOutput; close: () => Promise<void> } | null {
  let size: number;
  let flags: number;
  try {
    const stats = fstatSync(fd);
    if (!stats.isFile() || stats.size === 0) return null;
    size = stats.size;
    const match = /^flags:\s*([0-7]+)$/m.exec(readFileSync(`/proc/self/fdinfo/${fd}`, 'utf8'));
    if (!match?.[1]) return null;
    flags = Number.parseInt(match[1], 8);
  } catch {
    return null;
  }
  if ((flags & constants.O_APPEND) === 0) return null;
  // fd 1 is usually write-only: read the same file through its /proc link.
  let reader: Promise<FileHandle> | undefined;
  const output: ResumableOutput = {
    description: 'stdout (a file opened for appending)',
    length: size,
    read: async (buffer, position) => {
      reader ??= open(`/proc/self/fd/${fd}`, 'r');
      return (await (await reader).read(buffer, 0, buffer.length, position)).bytesRead;
    },
  };
  return {
    output,
    close: async () => {
      const handle = reader;
      reader = undefined;
      if (handle) await handle.then((opened) => opened.close()).catch(() => {});
    },
  };
}
