import { parseDurationMs } from './args.js';
import type { Log, LogFields } from './log/index.js';
import { type Completion, completion, type ExpectedTotal } from './progress/completion.js';
import { type ProgressView, progressHead } from './progress/progress-text.js';
import { RateWindow } from './progress/rate-window.js';
import { describeSummary } from './progress/summary-text.js';

export const PROGRESS_INTERVAL_ENV = 'BUCKETPIPE_PROGRESS_INTERVAL';
const DEFAULT_EVENT_INTERVAL_MS = 10_000;
const REDRAW_MS = 250;

/** Where a transfer stands, as its command sees it at one moment. */
export interface ProgressSample {
  /** What the rate, percent and ETA count: raw bytes read, written or verified (stored bytes read, for verify). */
  bytes: number;
  /** The word after the byte count when no total is known: "read", "written". */
  unit: string;
  /** What `bytes` comes to at the end, when known. */
  expected?: ExpectedTotal | null;
  /** The command's own fields of the JSON progress event. */
  fields: LogFields;
  /** The human line around the shared head (progressHead): `send ${head} · 12 chunks stored`. */
  line: (head: string) => string;
}

/**
 * A command's progress and messages on its Log. In the human format on a terminal, a live line
 * (bar, percent and ETA when the total is known) redrawn at most 4 times a second; in the JSON
 * format, a `progress` event every 10 s (BUCKETPIPE_PROGRESS_INTERVAL, for tests); otherwise
 * only state changes ("waiting for …"), so that logs stay readable. Rates are over the last 10 s.
 */
export class ProgressReporter {
  #log: Log;
  #quiet: boolean;
  #started = performance.now();
  #rate = new RateWindow();
  #last: ProgressSample | undefined;
  #lastDraw = Number.NEGATIVE_INFINITY;
  #eventIntervalMs: number;
  #eventTimer: NodeJS.Timeout | undefined;
  #waitingFor: string | null = null;
  #waitTimer: NodeJS.Timeout | undefined;

  constructor(log: Log, options: { quiet?: boolean; eventIntervalMs?: number } = {}) {
    this.#log = log;
    this.#quiet = options.quiet ?? false;
    this.#eventIntervalMs = options.eventIntervalMs ?? progressEventIntervalMs(process.env[PROGRESS_INTERVAL_ENV]);
  }

  get elapsedSeconds(): number {
    return (performance.now() - this.#started) / 1000;
  }

  update(sample: ProgressSample): void {
    const now = performance.now();
    this.#rate.record(now, sample.bytes);
    this.#last = sample;
    if (this.#quiet) return;
    if (this.#log.live) {
      if (now - this.#lastDraw < REDRAW_MS) return;
      this.#lastDraw = now;
      this.#log.status(sample.line(progressHead(this.#view(sample, now), { bar: true })));
    } else if (this.#log.format === 'json') {
      this.#eventTimer ??= setInterval(() => this.#progressEvent(), this.#eventIntervalMs).unref();
    }
  }

  /** Shows `line` as the live line until the next update (a terminal only): what the transfer is held by. */
  note(line: string): void {
    const now = performance.now();
    if (this.#quiet || !this.#log.live || now - this.#lastDraw < REDRAW_MS) return;
    this.#lastDraw = now;
    this.#log.status(line);
  }

  /**
   * Says what we are waiting for once the wait has lasted a moment, and again every half minute
   * while it lasts: a receiver that keeps up with a live sender waits briefly for every chunk,
   * and that should not print a line per chunk.
   */
  waiting(what: string | null): void {
    if (what === this.#waitingFor) return;
    this.#waitingFor = what;
    clearInterval(this.#waitTimer);
    this.#waitTimer = undefined;
    if (what === null || this.#quiet) return;
    const say = () => this.#log.info('waiting', `waiting for ${what}`, { waitingFor: what });
    this.#waitTimer = setTimeout(() => {
      say();
      this.#waitTimer = setInterval(say, 30_000).unref();
    }, 2000).unref();
  }

  message(text: string, event = 'message', fields?: LogFields): void {
    this.#log.info(event, text, fields);
  }

  warning(text: string): void {
    this.#log.warn('warning', text);
  }

  /** The transfer's record: the last line, a sentence (human) or every field (JSON). */
  summary(fields: LogFields): void {
    clearInterval(this.#eventTimer);
    this.#eventTimer = undefined;
    this.waiting(null);
    this.#log.info('summary', describeSummary(fields), fields);
  }

  #progressEvent(): void {
    const sample = this.#last;
    if (!sample) return;
    const view = this.#view(sample, performance.now());
    this.#log.info('progress', sample.line(progressHead(view, { bar: false })), {
      ...sample.fields,
      ...progressFields(view),
      elapsedSeconds: Math.round(this.elapsedSeconds),
    });
  }

  #view(sample: ProgressSample, now: number): ProgressView {
    const bytesPerSecond = this.#rate.bytesPerSecond(now);
    const expected = sample.expected ?? null;
    return {
      bytes: sample.bytes,
      unit: sample.unit,
      bytesPerSecond,
      expected,
      completion: expected ? completion(sample.bytes, expected, bytesPerSecond) : null,
    };
  }
}

/** Every 10 s; tests shorten it with BUCKETPIPE_PROGRESS_INTERVAL (a duration: 200ms). */
export function progressEventIntervalMs(env: string | undefined): number {
  return env === undefined || env.trim() === '' ? DEFAULT_EVENT_INTERVAL_MS : parseDurationMs(env, `${PROGRESS_INTERVAL_ENV}=${env}`);
}

/** The shared fields of a JSON progress event: rate, and with a known total percent and ETA. */
export function progressFields(view: ProgressView): LogFields {
  const rate = view.bytesPerSecond === null ? {} : { MBps: Number((view.bytesPerSecond / 1e6).toFixed(1)) };
  const done: Completion | null = view.completion;
  if (!view.expected || !done) return rate;
  return {
    ...rate,
    expectedRawBytes: view.expected.bytes,
    estimate: !view.expected.exact,
    percent: done.percent,
    ...(done.etaSeconds === null ? {} : { etaSeconds: Math.round(done.etaSeconds) }),
  };
}

/** "stored is 37% of raw: compression, not loss". */
export function describeRatio(rawBytes: number, storedBytes: number): string {
  if (rawBytes === 0) return 'nothing stored yet';
  const percent = Math.round((storedBytes / rawBytes) * 100);
  return `stored is ${percent}% of raw (${(rawBytes / Math.max(1, storedBytes)).toFixed(2)}x): compression, not loss`;
}
