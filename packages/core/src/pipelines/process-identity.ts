import { readFileSync } from 'node:fs';

/**
 * What tells a process apart on Linux beyond its pid, which the kernel reuses: the boot it runs in
 * (`/proc/sys/kernel/random/boot_id`) and its start time in clock ticks since that boot (field 22
 * of `/proc/<pid>/stat`). Recorded by senders so that a restarted one can tell, at once and
 * safely, that its predecessor on the same host is gone.
 */
export interface ProcessIdentity {
  bootId: string;
  startTime: string;
}

/** This process's identity; undefined where /proc does not tell (not Linux). */
export function ownProcessIdentity(): ProcessIdentity | undefined {
  const bootId = readBootId();
  const startTime = readStartTime(process.pid);
  return bootId && startTime ? { bootId, startTime } : undefined;
}

/**
 * Whether the process `pid` with `identity`, which ran on this host, is gone: the host rebooted
 * since, no process has that pid, or the one that has it started at another time (a reused pid).
 * False when it may be alive, or when this host cannot tell.
 */
export function isProcessGone(pid: number, identity: ProcessIdentity | undefined): boolean {
  if (!identity || !Number.isSafeInteger(pid) || pid <= 0) return false;
  const bootId = readBootId();
  if (!bootId) return false;
  if (bootId !== identity.bootId) return true;
  const startTime = readStartTime(pid);
  return startTime === undefined || startTime !== identity.startTime;
}

export function isProcessIdentity(value: unknown): value is ProcessIdentity {
  if (typeof value !== 'object' || value === null) return false;
  const v = value as Record<string, unknown>;
  return typeof v.bootId === 'string' && v.bootId.length > 0 && typeof v.startTime === 'string' && /^\d+$/.test(v.startTime);
}

function readBootId(): string | undefined {
  try {
    return readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim() || undefined;
  } catch {
    return undefined;
  }
}

function readStartTime(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name (field 2) is in parentheses and may hold spaces: count from after it.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const startTime = fields[19]; // field 22 overall; fields[0] is field 3
    return startTime && /^\d+$/.test(startTime) ? startTime : undefined;
  } catch {
    return undefined;
  }
}
