import { formatBytes, formatRate } from '@bucketpipe/core';
import type { Completion, ExpectedTotal } from './completion.js';

/** "45s", "12m05s", "3h07m". */
export function formatDuration(seconds: number): string {
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
}

/** `[########............]` for 40%. */
export function renderBar(percent: number, width = 20): string {
  const filled = Math.max(0, Math.min(width, Math.floor((percent / 100) * width)));
  return `[${'#'.repeat(filled)}${'.'.repeat(width - filled)}]`;
}

export interface ProgressView {
  bytes: number;
  /** The word after the byte count when no total is known: "read", "written". */
  unit: string;
  bytesPerSecond: number | null;
  expected: ExpectedTotal | null;
  completion: Completion | null;
}

/**
 * The part of a progress line every command shares: "1.20 GiB read · 312.0 MB/s", or with a known
 * total "[####....] 42% 1.20 GiB / ~2.90 GiB · 312.0 MB/s · ETA 5m12s" (~: an estimate; the bar
 * only on a terminal).
 */
export function progressHead(view: ProgressView, options: { bar: boolean }): string {
  const rate = view.bytesPerSecond === null ? '' : ` · ${formatRate(view.bytesPerSecond, 1)}`;
  const { expected, completion } = view;
  if (!expected || !completion) return `${formatBytes(view.bytes)} ${view.unit}${rate}`;
  const bar = options.bar ? `${renderBar(completion.percent)} ` : '';
  const total = `${expected.exact ? '' : '~'}${formatBytes(expected.bytes)}`;
  const eta = completion.beyondEstimate
    ? ' · beyond the estimate'
    : completion.etaSeconds === null
      ? ''
      : ` · ETA ${formatDuration(completion.etaSeconds)}`;
  return `${bar}${completion.percent}% ${formatBytes(view.bytes)} / ${total}${rate}${eta}`;
}
