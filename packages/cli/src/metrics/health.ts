/** What /healthz answers. */
export interface HealthReport {
  status: 'ok' | 'waiting' | 'stalled';
  command: string;
  /** Seconds since the transfer last moved (or last stopped waiting for something outside its control). */
  secondsSinceProgress: number;
  stallAfterSeconds: number;
  /** What the transfer is waiting for, when it is waiting for something outside its control (a slow sender). */
  waitingFor?: string;
  /** Why it counts as stalled. */
  reason?: string;
}

/**
 * Progress-based health. A transfer is stalled when it has not moved for longer than `stallAfterMs`
 * — no chunk stored (send), written to the sink (receive) or copied (relay) — unless it is
 * legitimately waiting for something upstream (the sender has not stored the next chunk yet, the
 * stream has not started, a chunk is still in transit): a receiver that keeps up with a slow sender
 * is healthy, a receiver whose sink does not take bytes is not. The end of a wait counts as
 * progress, so the stall clock starts afresh when the awaited thing arrives.
 */
export class Health {
  readonly command: string;
  readonly stallAfterMs: number;
  #lastProgress = performance.now();
  #waitingFor: string | null = null;
  /** Blocked-sink detail for the reason text (receive). */
  #sinkBlockedSince: number | undefined;

  constructor(command: string, stallAfterMs: number) {
    this.command = command;
    this.stallAfterMs = stallAfterMs;
  }

  progressed(now = performance.now()): void {
    this.#lastProgress = now;
  }

  waiting(what: string | null, now = performance.now()): void {
    if (what === this.#waitingFor) return;
    if (what === null) this.#lastProgress = now;
    this.#waitingFor = what;
  }

  sinkBlocked(since: number | undefined): void {
    this.#sinkBlockedSince = since;
  }

  report(now = performance.now()): HealthReport {
    const idleMs = Math.max(0, now - this.#lastProgress);
    const base = {
      command: this.command,
      secondsSinceProgress: round(idleMs / 1000),
      stallAfterSeconds: round(this.stallAfterMs / 1000),
    };
    if (this.#waitingFor !== null) return { status: 'waiting', ...base, waitingFor: this.#waitingFor };
    if (idleMs <= this.stallAfterMs) return { status: 'ok', ...base };
    const sink = this.#sinkBlockedSince;
    const reason =
      sink !== undefined
        ? `the sink has not taken a write for ${round((now - sink) / 1000)}s`
        : `no progress for ${base.secondsSinceProgress}s (longer than --stall-after)`;
    return { status: 'stalled', ...base, reason };
  }
}

function round(seconds: number): number {
  return Math.round(seconds * 1000) / 1000;
}
