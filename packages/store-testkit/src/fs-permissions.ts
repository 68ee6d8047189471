import { statSync } from 'node:fs';
import { dirname, resolve } from 'node:path';

/**
 * True when a user who is neither the owner nor in the group can reach `path`: every directory
 * from the root down to it has the "others may search" bit. Tests that run a child process as an
 * unprivileged user (uid 65534) need it for the repository they load code from: a clone inside a
 * `mktemp -d` directory (mode 0700) is out of that user's reach.
 */
export function reachableByOthers(path: string): boolean {
  for (let dir = resolve(path); ; dir = dirname(dir)) {
    if ((statSync(dir).mode & 0o001) === 0) return false;
    if (dirname(dir) === dir) return true;
  }
}
