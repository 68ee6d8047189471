import { type StoreOpenOptions, UsageError } from '@bucketpipe/core';

/** Everything the S3 store needs to know besides the bucket and prefix, after defaults. */
export interface S3Settings {
  /** A custom endpoint (Ceph, MinIO, R2…) as a normalized URL, or undefined for AWS itself. */
  endpoint: string | undefined;
  /** Path-style addressing (http://host/bucket/key) instead of virtual-hosted (http://bucket.host/key). */
  pathStyle: boolean;
  /** An explicit region; undefined means the standard AWS chain (AWS_REGION, the profile…). */
  region: string | undefined;
  /** Accept a server that ignores If-None-Match / If-Match (then conditional writes are emulated, racily). */
  allowUnconditionalWrites: boolean;
  /** Requests the caller keeps in flight at most; the socket pool is sized from it. */
  concurrency: number;
  /** Which HTTP client carries the requests: the SDK's NodeHttpHandler on node:http agents, or undici. */
  httpClient: S3HttpClient;
}

export const DEFAULT_CONCURRENCY = 64;
export type S3HttpClient = 'node' | 'undici';
/**
 * The SDK's own Node.js handler. The undici handler (BUCKETPIPE_S3_HTTP_CLIENT=undici) measured 13–17 %
 * less client CPU on GetObject and the same on PutObject, no difference end to end. It is opt-in
 * for now; until it listened to the abort signal for the whole body (undici-handler.ts), an abort in
 * the middle of a GetObject body went unheard and the get completed anyway.
 */
export const DEFAULT_HTTP_CLIENT: S3HttpClient = 'node';

/**
 * Reads the store open options the CLI passes (`s3Endpoint`, `s3PathStyle`, `s3Region`,
 * `allowUnconditionalWrites`, `concurrency`, `s3HttpClient`), the SDK's own endpoint variables and
 * BUCKETPIPE_S3_HTTP_CLIENT.
 * A custom endpoint always uses path-style addressing: S3-compatible servers seldom have the
 * wildcard DNS that virtual-hosted buckets need.
 */
export function readS3Settings(options: StoreOpenOptions, env: NodeJS.ProcessEnv = process.env): S3Settings {
  const endpointText = stringOption(options, 's3Endpoint') ?? configuredEndpoint(env);
  const endpoint = endpointText === undefined ? undefined : parseEndpoint(endpointText);
  const region = stringOption(options, 's3Region');
  if (region !== undefined && !/^[a-z0-9-]+$/i.test(region)) {
    throw new UsageError(`invalid S3 region ${JSON.stringify(region)}: expected a name like us-east-1`, 'BP_S3_REGION');
  }
  return {
    endpoint,
    pathStyle: options.s3PathStyle === true || endpoint !== undefined,
    region,
    allowUnconditionalWrites: options.allowUnconditionalWrites === true,
    concurrency: parseConcurrency(options.concurrency),
    httpClient: parseHttpClient(stringOption(options, 's3HttpClient') ?? nonEmpty(env.BUCKETPIPE_S3_HTTP_CLIENT)),
  };
}

/** The `s3HttpClient` option, else BUCKETPIPE_S3_HTTP_CLIENT: `node` or `undici`. */
function parseHttpClient(value: string | undefined): S3HttpClient {
  if (value === undefined) return DEFAULT_HTTP_CLIENT;
  const name = value.toLowerCase();
  if (name === 'node' || name === 'undici') return name;
  throw new UsageError(`invalid S3 HTTP client ${JSON.stringify(value)}: expected node or undici`, 'BP_S3_HTTP_CLIENT');
}

/** The SDK's own variables for a custom endpoint (its "configured endpoints" feature), unless told to ignore them. */
function configuredEndpoint(env: NodeJS.ProcessEnv): string | undefined {
  if (/^true$/i.test(env.AWS_IGNORE_CONFIGURED_ENDPOINT_URLS?.trim() ?? '')) return undefined;
  return nonEmpty(env.AWS_ENDPOINT_URL_S3) ?? nonEmpty(env.AWS_ENDPOINT_URL);
}

export function parseEndpoint(text: string): string {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new UsageError(
      `invalid S3 endpoint ${JSON.stringify(text)}: give a URL such as http://127.0.0.1:7480 or https://s3.example.com`,
      'BP_S3_ENDPOINT',
    );
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new UsageError(`invalid S3 endpoint ${JSON.stringify(text)}: the URL must start with http:// or https://`, 'BP_S3_ENDPOINT');
  }
  if (url.username !== '' || url.password !== '' || url.search !== '' || url.hash !== '') {
    throw new UsageError(
      `invalid S3 endpoint ${JSON.stringify(url.origin)}…: no user, password, query or fragment in it (credentials come from the AWS chain)`,
      'BP_S3_ENDPOINT',
    );
  }
  // A path is allowed (a server behind a reverse proxy at /s3); a trailing slash is not significant.
  return `${url.origin}${url.pathname.replace(/\/+$/, '')}`;
}

function parseConcurrency(value: string | boolean | undefined): number {
  if (value === undefined) return DEFAULT_CONCURRENCY;
  const text = String(value).trim();
  const n = /^\d+$/.test(text) ? Number(text) : Number.NaN;
  if (!Number.isSafeInteger(n) || n < 1 || n > 10_000) {
    throw new UsageError(`invalid concurrency ${JSON.stringify(value)}: expected a whole number from 1 to 10000`, 'BP_S3_CONCURRENCY');
  }
  return n;
}

function stringOption(options: StoreOpenOptions, name: string): string | undefined {
  const value = options[name];
  return typeof value === 'string' ? nonEmpty(value) : undefined;
}

function nonEmpty(value: string | undefined): string | undefined {
  return value === undefined || value.trim() === '' ? undefined : value.trim();
}
