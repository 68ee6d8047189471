/** What a transfer's byte count comes to at its end, as far as it is known. */
export interface ExpectedTotal {
  bytes: number;
  /** False for an estimate (send --size, zfs send -nP): the stream may end before or after it. */
  exact: boolean;
}

export interface Completion {
  /** 0 … 100, rounded down; against an estimate at most 99: only the end of the stream is 100%. */
  percent: number;
  /** Seconds left at the current rate; null when not moving, or once past an estimate. */
  etaSeconds: number | null;
  /** More bytes than the estimate: the stream is longer than it said. */
  beyondEstimate: boolean;
}

export function completion(done: number, expected: ExpectedTotal, bytesPerSecond: number | null): Completion {
  const remaining = expected.bytes - done;
  if (remaining <= 0 && expected.exact) return { percent: 100, etaSeconds: 0, beyondEstimate: false };
  // Reaching an estimate is not the end: only more than it is news.
  if (remaining === 0) return { percent: 99, etaSeconds: 0, beyondEstimate: false };
  if (remaining < 0) return { percent: 99, etaSeconds: null, beyondEstimate: true };
  return {
    percent: Math.min(99, Math.floor((done / expected.bytes) * 100)),
    etaSeconds: bytesPerSecond !== null && bytesPerSecond > 0 ? remaining / bytesPerSecond : null,
    beyondEstimate: false,
  };
}
