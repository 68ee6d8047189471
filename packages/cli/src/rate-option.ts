import { type ObjectStore, parseRate, RATE_SYNTAX, RateLimitedStore, TokenBucket, UsageError } from '@bucketpipe/core';
import type { OptionSpec, ParsedCommandLine } from './args.js';

export const rateOptionSpec: OptionSpec = { rate: { type: 'string' } };

/** `--rate` in bytes per second, or undefined for no limit. */
export function rateOption(values: ParsedCommandLine['values']): number | undefined {
  const raw = values.rate;
  if (raw === undefined) return undefined;
  const rate = typeof raw === 'string' ? parseRate(raw) : null;
  if (rate === null) throw new UsageError(`--rate ${String(raw)}: not a positive rate; ${RATE_SYNTAX}`);
  return rate;
}

/** The store with its object bodies paced to `rate`, or the store itself when there is no limit. */
export function rateLimited(store: ObjectStore, rate: number | undefined): ObjectStore {
  return rate === undefined ? store : new RateLimitedStore(store, new TokenBucket({ bytesPerSecond: rate }));
}
