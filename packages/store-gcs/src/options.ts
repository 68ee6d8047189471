import { type StoreOpenOptions, UsageError } from '@bucketpipe/core';

export interface ParsedOpenOptions {
  /** Custom endpoint (test servers, emulators): requests go there unauthenticated. */
  endpoint: string | undefined;
  /** Parallel requests for batch deletes. */
  concurrency: number | undefined;
}

/** Reads the StoreOpenOptions keys this store understands: `gcsEndpoint` (URL), `concurrency` (positive integer). */
export function parseOpenOptions(options: StoreOpenOptions): ParsedOpenOptions {
  return { endpoint: parseEndpoint(options.gcsEndpoint), concurrency: parseConcurrency(options.concurrency) };
}

function parseEndpoint(value: StoreOpenOptions[string]): string | undefined {
  if (value === undefined || value === false) return undefined;
  const text = typeof value === 'string' ? value.trim() : '';
  let url: URL | undefined;
  try {
    url = new URL(text);
  } catch {
    url = undefined;
  }
  if (!url || (url.protocol !== 'http:' && url.protocol !== 'https:') || url.search !== '' || url.hash !== '') {
    throw new UsageError(
      `--gcs-endpoint ${JSON.stringify(value)}: expected an http:// or https:// URL of a GCS JSON API server, e.g. http://127.0.0.1:4443`,
      'BP_GCS_ENDPOINT',
    );
  }
  return url.href.replace(/\/+$/, '');
}

function parseConcurrency(value: StoreOpenOptions[string]): number | undefined {
  if (value === undefined || value === false) return undefined;
  const n = typeof value === 'string' && /^\s*\d+\s*$/.test(value) ? Number(value) : Number.NaN;
  if (!Number.isInteger(n) || n < 1) {
    throw new UsageError(`concurrency ${JSON.stringify(value)}: expected a whole number of requests, at least 1`, 'BP_USAGE');
  }
  return n;
}
