import { readFileSync, writeSync } from 'node:fs';
import { performance } from 'node:perf_hooks';

/** Set to 1, the CLI writes its main thread's busy time to stderr as it exits (the bench reads it). */
export const MAIN_THREAD_REPORT_ENV = 'BUCKETPIPE_REPORT_MAIN_THREAD';

/** Linux's USER_HZ, the unit of /proc's CPU times: 100 on every architecture Node runs on. */
const CLOCK_TICKS_PER_SECOND = 100;

/**
 * One JSON line on stderr about the main thread, the one thread every byte passes through (so
 * its load is a ceiling no number of codec threads lifts):
 * - `cpuSeconds`: CPU time of that thread alone (user + sys, /proc/self/task/<pid>/stat), which a
 *   busy shared machine does not inflate; null where /proc is not there.
 * - `busySeconds`: the event loop's busy wall time (`performance.eventLoopUtilization()`), which
 *   also counts the time the thread was runnable but waiting for a core.
 * Written synchronously: it is called right before process.exit.
 */
export function reportMainThread(env: NodeJS.ProcessEnv = process.env): void {
  if (env[MAIN_THREAD_REPORT_ENV] !== '1') return;
  writeSync(2, `${JSON.stringify({ event: 'main-thread', ...mainThreadUse() })}\n`);
}

export interface MainThreadUse {
  cpuSeconds: number | null;
  busySeconds: number;
  utilization: number;
  uptimeSeconds: number;
}

export function mainThreadUse(): MainThreadUse {
  const { active, utilization } = performance.eventLoopUtilization();
  return { cpuSeconds: mainThreadCpuSeconds(), busySeconds: active / 1000, utilization, uptimeSeconds: process.uptime() };
}

function mainThreadCpuSeconds(): number | null {
  try {
    const stat = readFileSync(`/proc/self/task/${process.pid}/stat`, 'utf8');
    // The fields after the command name (which may hold spaces, hence the last ')'): utime is the 14th, stime the 15th.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS_PER_SECOND;
  } catch {
    return null;
  }
}
