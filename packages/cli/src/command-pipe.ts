import { spawn } from 'node:child_process';
import { closeSync, constants, openSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** The two ends of a kernel pipe: the command writes into `writeFd`, send reads `readFd` with read(2). */
export interface CommandPipe {
  readFd: number;
  writeFd: number;
}

/**
 * A pipe for a source command's stdout, made as a FIFO in a private directory that is removed at
 * once. Node gives a child's stdout to its parent as a non-blocking socket read on the main thread
 * into a fresh 64 KiB buffer per read, which on Node 22 and 24 held 30–70 MiB more memory than the
 * `--buffer` bound allows; a blocking pipe is read in the thread pool straight into the chunk
 * slabs, as stdin is. Undefined where no FIFO can be made (no `mkfifo`): the caller falls back to
 * the socket.
 */
export async function openCommandPipe(): Promise<CommandPipe | undefined> {
  const directory = await mkdtemp(join(tmpdir(), 'bucketpipe-source-'));
  try {
    const path = join(directory, 'stdout');
    if (!(await made(path))) return undefined;
    // Opening one end of a FIFO blocks until the other is open, except read-write (Linux and
    // macOS): that end makes both opens below return at once, then it goes. The command must get
    // a write-only end, so that it sees EPIPE, not a full pipe forever, if send stops reading.
    const both = openSync(path, constants.O_RDWR);
    try {
      const readFd = openSync(path, constants.O_RDONLY);
      try {
        return { readFd, writeFd: openSync(path, constants.O_WRONLY) };
      } catch (error) {
        closeSync(readFd);
        throw error;
      }
    } finally {
      closeSync(both);
    }
  } finally {
    await rm(directory, { recursive: true, force: true });
  }
}

function made(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const child = spawn('mkfifo', ['-m', '600', path], { stdio: 'ignore' });
    child.once('error', () => resolve(false));
    child.once('exit', (code) => resolve(code === 0));
  });
}
