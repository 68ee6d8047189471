import { setTimeout as sleep } from 'node:timers/promises';

/** Sleeps `ms`; an abort ends it with the signal's reason (InterruptedError on SIGTERM), not a bare AbortError. */
export async function pause(ms: number, signal: AbortSignal): Promise<void> {
  try {
    await sleep(ms, undefined, { signal });
  } catch (error) {
    throw signal.aborted ? signal.reason : error;
  }
}
