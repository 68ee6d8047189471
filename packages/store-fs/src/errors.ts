import { StoreError } from '@bucketpipe/core';

/** Maps a Node fs error to the store error kinds the retry policy understands. */
export function toStoreError(error: unknown, action: string, path: string, key?: string): StoreError {
  const code = (error as NodeJS.ErrnoException | undefined)?.code;
  const at = `${action} ${path}`;
  switch (code) {
    case 'EACCES':
    case 'EPERM':
      return new StoreError(
        'auth',
        `cannot ${at}: permission denied (${code}): give this user write access to the directory or pick another one`,
        { key, cause: error },
      );
    case 'EROFS':
      return new StoreError('auth', `cannot ${at}: the file system is read-only (EROFS): use a writable directory`, { key, cause: error });
    case 'ENOSPC':
    case 'EDQUOT':
      return new StoreError('fatal', `cannot ${at}: no space left (${code}): free space or use another directory`, { key, cause: error });
    case 'ENOTDIR':
      return new StoreError('fatal', `cannot ${at}: a path component is a file, not a directory (ENOTDIR): fix the stream path`, {
        key,
        cause: error,
      });
    case 'EAGAIN':
    case 'EBUSY':
    case 'EMFILE':
    case 'ENFILE':
    case 'EINTR':
    case 'EIO':
      return new StoreError('transient', `cannot ${at} (${code})`, { key, cause: error });
    default:
      return new StoreError('fatal', `cannot ${at}: ${(error as Error)?.message ?? String(error)}`, { key, cause: error });
  }
}

export function isErrno(error: unknown, ...codes: string[]): boolean {
  const code = (error as NodeJS.ErrnoException | undefined)?.code;
  return code !== undefined && codes.includes(code);
}
