import { constants } from 'node:fs';
import { type FileHandle, open } from 'node:fs/promises';
import { isErrno } from './errors.js';

/**
 * O_DIRECT moves bytes between the caller's memory and the disk without copying them through the
 * page cache, which on a virtual machine can cost more CPU than compressing them
 * (docs/PERFORMANCE.md, "Writing chunk files around the page cache"). It needs the memory address,
 * the length and the file offset aligned to the device's logical block size; 4 KiB covers every
 * device. JavaScript cannot see a buffer's address, so a misaligned one shows only as EINVAL on
 * the first read or write, before any byte moved: the caller then does the same I/O buffered.
 */
export const DIRECT_IO_ALIGNMENT = 4096;

/** The part of `length` that O_DIRECT can move: whole blocks. */
export function alignedPart(length: number): number {
  return length - (length % DIRECT_IO_ALIGNMENT);
}

/** Whether a view could be aligned: it starts on a block boundary of its buffer and spans one block. */
export function mayBeAligned(view: Uint8Array): boolean {
  return view.byteOffset % DIRECT_IO_ALIGNMENT === 0 && view.length >= DIRECT_IO_ALIGNMENT;
}

/**
 * Opens `path` with O_DIRECT (for `write`, creating it: it must not exist yet), or returns
 * undefined where the file system refuses O_DIRECT (EINVAL: tmpfs on older kernels, some FUSE
 * and network file systems).
 */
export async function openDirect(path: string, purpose: 'read' | 'write'): Promise<FileHandle | undefined> {
  const flags = purpose === 'write' ? constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL : constants.O_RDONLY;
  try {
    return await open(path, flags | constants.O_DIRECT, 0o666);
  } catch (error) {
    if (isErrno(error, 'EINVAL')) return undefined;
    throw error;
  }
}

/**
 * Writes the whole blocks at the start of `body` at file offset 0 and returns how many bytes that
 * was: 0 when the memory turned out misaligned.
 */
export async function writeAlignedPrefix(handle: FileHandle, body: Uint8Array): Promise<number> {
  const length = alignedPart(body.length);
  let written = 0;
  try {
    while (written < length) {
      const { bytesWritten } = await handle.write(body, written, length - written, written);
      written += bytesWritten;
    }
  } catch (error) {
    if (written === 0 && isErrno(error, 'EINVAL')) return 0;
    throw error;
  }
  return written;
}

/**
 * Reads `length` bytes from file offset `start` (block-aligned) into `into` in whole blocks, as
 * far as `into` has room for them: the last block may carry bytes past `length` (or the file's
 * end) into `into`'s spare room. Returns how many of the `length` bytes it read: 0 when the memory
 * turned out misaligned, fewer when `into` had no room for the last partial block or the file
 * ended first.
 */
export async function readAligned(handle: FileHandle, into: Uint8Array, start: number, length: number): Promise<number> {
  const wanted = Math.min(alignedPart(length + DIRECT_IO_ALIGNMENT - 1), alignedPart(into.length));
  let read = 0;
  try {
    while (read < wanted) {
      const { bytesRead } = await handle.read(into, read, wanted - read, start + read);
      read += bytesRead;
      if (bytesRead === 0 || bytesRead % DIRECT_IO_ALIGNMENT !== 0) break; // the end of the file
    }
  } catch (error) {
    if (read === 0 && isErrno(error, 'EINVAL')) return 0;
    throw error;
  }
  return Math.min(read, length);
}
