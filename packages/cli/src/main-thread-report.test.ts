import { Worker } from 'node:worker_threads';
import { describe, expect, it } from 'vitest';
import { MAIN_THREAD_REPORT_ENV, mainThreadReport, mainThreadUse, markStreamStarted } from './main-thread-report.js';

/** CPU seconds (user + sys) of the whole process: every thread. */
function processCpuSeconds(): number {
  const { user, system } = process.cpuUsage();
  return (user + system) / 1e6;
}

/** Spins until the process has used `seconds` of CPU: a fixed amount of work however busy the machine is. */
function spinCpu(seconds: number): void {
  const until = processCpuSeconds() + seconds;
  while (processCpuSeconds() < until) {
    // spin
  }
}

const workerSpinning = `
  const cpu = () => { const { user, system } = process.cpuUsage(); return (user + system) / 1e6; };
  const until = cpu() + 0.8;
  while (cpu() < until) {}
`;

describe('mainThreadUse', () => {
  it("counts the main thread's own CPU time, not a worker thread's", async () => {
    const start = { main: mainThreadUse(), process: processCpuSeconds() };
    // 0.8 CPU s spun by a worker must not show up in the main thread's CPU time ...
    const worker = new Worker(workerSpinning, { eval: true });
    await new Promise((resolve) => worker.once('exit', resolve));
    const afterWorker = { main: mainThreadUse(), process: processCpuSeconds() };
    // ... while 0.4 CPU s spun on the main thread does.
    spinCpu(0.4);
    const end = { main: mainThreadUse(), process: processCpuSeconds() };
    expect(start.main.cpuSeconds).not.toBeNull();
    const mainDuringWorker = (afterWorker.main.cpuSeconds as number) - (start.main.cpuSeconds as number);
    const mainDuringSpin = (end.main.cpuSeconds as number) - (afterWorker.main.cpuSeconds as number);
    expect(afterWorker.process - start.process).toBeGreaterThan(0.8);
    expect(mainDuringWorker).toBeLessThan(0.4);
    // /proc counts in 10 ms ticks; other threads of the process (GC helpers) may add a little to the process total.
    expect(mainDuringSpin).toBeGreaterThan(0.3);
    expect(mainDuringSpin).toBeLessThanOrEqual(end.process - afterWorker.process + 0.02);
    expect(end.main.busySeconds).toBeGreaterThan(start.main.busySeconds);
  });

  it('tells the start-up apart: the use when the first bytes had moved, noted once', () => {
    const env = { [MAIN_THREAD_REPORT_ENV]: '1' };
    markStreamStarted(100, {});
    markStreamStarted(0, env);
    expect(mainThreadReport().streamStart, 'not asked for, or nothing moved yet').toBeNull();
    spinCpu(0.05);
    markStreamStarted(65_536, env);
    const start = mainThreadReport().streamStart;
    expect(start?.rawBytes).toBe(65_536);
    expect(start?.cpuSeconds).toBeGreaterThan(0);
    expect(start?.processCpuSeconds).toBeGreaterThanOrEqual((start?.cpuSeconds as number) - 0.02);
    spinCpu(0.1);
    markStreamStarted(10 * 65_536, env);
    const report = mainThreadReport();
    expect(report.streamStart).toEqual(start);
    expect(report.cpuSeconds as number).toBeGreaterThan(start?.cpuSeconds as number);
    expect(report.uptimeSeconds).toBeGreaterThan(start?.uptimeSeconds as number);
  });
});
