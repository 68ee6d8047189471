import { type StoreOpenOptions, UsageError } from '@bucketpipe/core';

export interface ParsedOpenOptions {
  /** Custom endpoint (test servers, emulators): requests go there unauthenticated. */
  endpoint: string | undefined;
  /** Parallel requests for batch deletes. */
  concurrency: number | undefined;
}

/**
 * Reads the StoreOpenOptions keys this store understands: `gcsEndpoint` (URL), `concurrency` (positive
 * integer). Without `gcsEndpoint`, the STORAGE_EMULATOR_HOST environment variable names the endpoint.
 */
export function parseOpenOptions(options: StoreOpenOptions, env: NodeJS.ProcessEnv = process.env): ParsedOpenOptions {
  return {
    endpoint: parseEndpoint(options.gcsEndpoint) ?? emulatorEndpoint(env.STORAGE_EMULATOR_HOST),
    concurrency: parseConcurrency(options.concurrency),
  };
}

/**
 * The endpoint STORAGE_EMULATOR_HOST names, in the form --gcs-endpoint takes (server root, no
 * /storage/v1): the client library would use the variable verbatim as its JSON API base, so
 * `http://127.0.0.1:4443` would miss the /storage/v1 prefix every real server serves under.
 * Accepts what other clients accept too: `host:port` (http), and a URL ending in /storage/v1.
 */
export function emulatorEndpoint(value: string | undefined): string | undefined {
  const text = value?.trim();
  if (text === undefined || text === '') return undefined;
  const withScheme = /^[a-z][a-z0-9+.-]*:\/\//i.test(text) ? text : `http://${text}`;
  let url: URL | undefined;
  try {
    url = new URL(withScheme);
  } catch {
    url = undefined;
  }
  if (!url || (url.protocol !== 'http:' && url.protocol !== 'https:') || url.search !== '' || url.hash !== '') {
    throw new UsageError(
      `STORAGE_EMULATOR_HOST ${JSON.stringify(value)}: expected the http:// URL of a GCS JSON API server, e.g. http://127.0.0.1:4443 (or unset it and pass --gcs-endpoint)`,
      'BP_GCS_ENDPOINT',
    );
  }
  return url.href.replace(/\/+$/, '').replace(/\/storage\/v1$/, '');
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
