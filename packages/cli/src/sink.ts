import { type ChildProcess, spawn } from 'node:child_process';
import { fstatSync, fsync, write } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import { type Sink, SinkFailedError, UsageError } from '@bucketpipe/core';
import { describeCommand, describeExit } from './command-line.js';

const writeAsync = promisify(write);
const fsyncAsync = promisify(fsync);

/**
 * Writes into a command's stdin. The command runs in its own process group so that on failure we
 * can kill it (and whatever it spawned) *before* closing its stdin: `zfs recv` must never see
 * end-of-input for a stream that did not arrive whole.
 */
export async function commandSink(argv: string[]): Promise<Sink> {
  const [file, ...args] = argv;
  if (file === undefined) throw new UsageError('missing sink command after --');
  const description = describeCommand(argv);
  const child: ChildProcess = spawn(file, args, { stdio: ['pipe', 'inherit', 'inherit'], detached: true });
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
  const failure = exited.then(({ code, signal }) => {
    // After finish() or abort() the exit status is theirs to judge: an exit 0 then is success.
    if (aborting || finishing) return new Promise<never>(() => {});
    throw new SinkFailedError('BP_SINK_FAILED', `sink command "${description}" ${describeExit(code, signal)} before the stream ended`);
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
      if (code !== 0) throw new SinkFailedError('BP_SINK_FAILED', `sink command "${description}" ${describeExit(code, signal)}`);
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

/** Writes to our stdout through the thread pool (never blocking the event loop on a slow reader). */
export function stdoutSink(): Sink {
  const fd = 1;
  return {
    description: 'stdout',
    failure: new Promise<never>(() => {}),
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
      if (fstatSync(fd).isFile()) await fsyncAsync(fd);
    },
    abort: async () => {},
  };
}
