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
  writeSync(2, `${JSON.stringify(mainThreadReport())}\n`);
}

export function mainThreadReport(): MainThreadUse & { event: 'main-thread'; streamStart: StreamStart | null } {
  return { event: 'main-thread', ...mainThreadUse(), streamStart: streamStart ?? null };
}

/** The main thread's use when the stream's first bytes had moved, the whole process's CPU then, and how many bytes had moved. */
export interface StreamStart extends MainThreadUse {
  /** User + system CPU of every thread of the process (getrusage). */
  processCpuSeconds: number;
  rawBytes: number;
}

let streamStart: StreamStart | undefined;

/**
 * Notes, once, that `rawBytes` of the stream have moved: what the main thread used until then is
 * start-up (loading the code, opening the store, starting the codec threads, reading the manifest),
 * the same for a megabyte as for terabytes, and no ceiling on throughput. The report carries it,
 * so that the main thread's cost per byte can be told from it.
 */
export function markStreamStarted(rawBytes: number, env: NodeJS.ProcessEnv = process.env): void {
  if (streamStart !== undefined || rawBytes <= 0 || env[MAIN_THREAD_REPORT_ENV] !== '1') return;
  const { user, system } = process.cpuUsage();
  streamStart = { ...mainThreadUse(), processCpuSeconds: (user + system) / 1e6, rawBytes };
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
