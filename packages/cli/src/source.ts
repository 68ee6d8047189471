import { type ChildProcess, spawn } from 'node:child_process';
import { closeSync, fstatSync } from 'node:fs';
import { isatty } from 'node:tty';
import { type ChunkReader, FdChunkReader, isChunkReader, SourceFailedError, UsageError } from '@bucketpipe/core';
import { describeCommand, describeExit } from './command-line.js';
import { openCommandPipe } from './command-pipe.js';
import { type CommandOutput, readCommandStderr } from './command-stderr.js';

export interface ByteSource {
  description: string;
  bytes: ChunkReader | AsyncIterable<Uint8Array>;
  /** Resolves when the producer finished successfully; rejects with SourceFailedError otherwise. */
  exit: Promise<void>;
  /** Stops the producer (the send failed or was interrupted). */
  stop(): void;
}

/** Runs `argv` and reads its stdout. Resolves once the command has started, so a typo fails before any upload. */
export async function commandSource(argv: string[], output: CommandOutput): Promise<ByteSource> {
  const [file, ...args] = argv;
  if (file === undefined) throw new UsageError('missing source command after --');
  const description = describeCommand(argv);
  const pipe = await openCommandPipe();
  let child: ChildProcess;
  try {
    child = spawn(file, args, { stdio: ['ignore', pipe ? pipe.writeFd : 'pipe', 'pipe'] });
  } finally {
    // The command has its own copy now: when it exits, the reader sees the end of the stream.
    if (pipe) closeSync(pipe.writeFd);
  }
  if (child.stderr) readCommandStderr(child.stderr, description, output);
  const bytes = pipe ? new FdChunkReader(pipe.readFd, { owned: true }) : socketOutput(child);
  await new Promise<void>((resolve, reject) => {
    child.once('spawn', resolve);
    child.once('error', (error: NodeJS.ErrnoException) => {
      if (isChunkReader(bytes)) void bytes.close();
      reject(
        new SourceFailedError(
          'BP_SOURCE_START',
          `cannot run source command "${description}": ${error.code === 'ENOENT' ? 'command not found' : error.message}; check the command and PATH`,
        ),
      );
    });
  });
  const exit = new Promise<void>((resolve, reject) => {
    child.once('exit', (code, signal) => {
      if (code === 0) resolve();
      else
        reject(
          new SourceFailedError(
            'BP_SOURCE_FAILED',
            `source command "${description}" ${describeExit(code, signal)}: the stream was marked aborted`,
          ),
        );
    });
  });
  exit.catch(() => {});
  return {
    description,
    bytes,
    exit,
    stop: () => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
    },
  };
}

function socketOutput(child: ChildProcess): AsyncIterable<Uint8Array> {
  const stdout = child.stdout;
  if (!stdout) throw new Error('bug: source command has no stdout pipe');
  // Node flushes (resumes, discarding what they hold) the stdio streams of an exited child that no
  // one listens to yet: a command whose whole output fits in the pipe and that exits before the
  // send reads it — an empty zfs increment, a `printf` — would arrive as an empty stream. A
  // listener marks stdout as being read; the data waits in it for the reader.
  stdout.on('readable', () => {});
  return stdout;
}

/** Our stdin, read with read(2) straight into chunk buffers when it is a pipe or a file. */
export function stdinSource(): ByteSource {
  if (isatty(0)) {
    throw new UsageError(
      'send reads the stream from stdin or from a command, and stdin is a terminal: pipe data in (zfs send … | bucketpipe send URL) or give the command after --',
    );
  }
  const info = fstatSync(0);
  const direct = info.isFIFO() || info.isFile();
  return { description: 'stdin', bytes: direct ? new FdChunkReader(0) : process.stdin, exit: Promise.resolve(), stop: () => {} };
}
