import { StoreError } from '@bucketpipe/core';

/** What a failed request was about, for the message. */
export interface ErrorContext {
  bucket: string;
  /** Where the requests go: the custom endpoint URL, or "AWS S3 (region)". */
  endpoint: string;
  /** True for a custom endpoint: then an unreachable server is a configuration error, named as such. */
  customEndpoint: boolean;
  action: string;
  key?: string | undefined;
  /**
   * 'open': the first request of a store, before any data moved. A refused connection or unknown
   * host then means a wrong endpoint and fails at once; later it is a transient outage and retried.
   */
  phase?: 'open' | 'call';
}

/** The parts of an SDK or Node error that the mapping looks at. */
export interface ErrorFacts {
  name: string;
  code: string | undefined;
  status: number | undefined;
  message: string;
}

export function errorFacts(error: unknown): ErrorFacts {
  const e = (error ?? {}) as {
    name?: unknown;
    Code?: unknown;
    code?: unknown;
    message?: unknown;
    $metadata?: { httpStatusCode?: unknown };
    cause?: { code?: unknown };
  };
  const status = e.$metadata?.httpStatusCode;
  // Node network errors carry `code` (ECONNRESET…); S3 errors carry the XML <Code> as name/Code.
  const code = typeof e.code === 'string' ? e.code : typeof e.cause?.code === 'string' ? e.cause.code : undefined;
  return {
    name: typeof e.Code === 'string' ? e.Code : typeof e.name === 'string' ? e.name : 'Error',
    code,
    status: typeof status === 'number' ? status : undefined,
    message: oneLine(typeof e.message === 'string' ? e.message : String(error)),
  };
}

const AUTH_CODES = new Set([
  'AccessDenied',
  'Forbidden',
  'InvalidAccessKeyId',
  'SignatureDoesNotMatch',
  'ExpiredToken',
  'InvalidToken',
  'TokenRefreshRequired',
  'InvalidSecurity',
  'AllAccessDisabled',
  'AccountProblem',
  'CredentialsProviderError',
  'UnrecognizedClientException',
]);
/** Codes that say the credentials themselves are wrong (as opposed to: valid, but not allowed this). */
const BAD_CREDENTIAL_CODES = new Set([
  'InvalidAccessKeyId',
  'SignatureDoesNotMatch',
  'ExpiredToken',
  'InvalidToken',
  'TokenRefreshRequired',
  'CredentialsProviderError',
]);
const THROTTLE_CODES = new Set([
  'SlowDown',
  'Throttling',
  'ThrottlingException',
  'TooManyRequests',
  'RequestLimitExceeded',
  'TooManyRequestsException',
]);
const TRANSIENT_CODES = new Set(['InternalError', 'ServiceUnavailable', 'RequestTimeout', 'TimeoutError', 'OperationAborted']);
const NETWORK_CODES = new Set([
  'ECONNRESET',
  'EPIPE',
  'ETIMEDOUT',
  'ECONNABORTED',
  'EAI_AGAIN',
  'ENETUNREACH',
  'EHOSTUNREACH',
  'ENETDOWN',
  'ERR_STREAM_PREMATURE_CLOSE',
  // undici (the `undici` HTTP client, and errors that reach us from its response bodies):
  'UND_ERR_SOCKET', // the connection closed or reset ("other side closed")
  'UND_ERR_CONNECT_TIMEOUT', // no connection within the connect timeout (at open: fatal, below)
  'UND_ERR_HEADERS_TIMEOUT', // silence while sending the request or waiting for the answer
  'UND_ERR_BODY_TIMEOUT', // silence in the middle of the answer's body
  'UND_ERR_RES_CONTENT_LENGTH_MISMATCH', // the answer's body ended short
]);
const UNREACHABLE_CODES = new Set(['ECONNREFUSED', 'ENOTFOUND']);

/** True when the error says the credentials are wrong or missing (not merely without a permission). */
export function isBadCredentials(error: unknown): boolean {
  return BAD_CREDENTIAL_CODES.has(errorFacts(error).name);
}

export function isPreconditionError(error: unknown): boolean {
  const { name, status } = errorFacts(error);
  return status === 412 || name === 'PreconditionFailed' || name === 'ConditionalRequestConflict';
}

export function isNotFound(error: unknown): boolean {
  const { name, status } = errorFacts(error);
  return name === 'NoSuchKey' || name === 'NotFound' || (status === 404 && name !== 'NoSuchBucket');
}

/**
 * Maps an SDK or network error to the StoreError kinds core's retry policy keys off. Messages are
 * one line naming the bucket and the endpoint, and the fix; they never contain credentials (only
 * the error code is taken from an auth failure, not the server's text).
 */
export function toStoreError(error: unknown, context: ErrorContext): StoreError {
  if (error instanceof StoreError) return error;
  const facts = errorFacts(error);
  const { name, code, status } = facts;
  const where = `s3://${context.bucket} at ${context.endpoint}`;
  const at = `${context.action}${context.key === undefined ? '' : ` ${context.key}`} in ${where}`;
  const options = { key: context.key, cause: error };

  if (name === 'CredentialsProviderError') {
    return new StoreError(
      'auth',
      `no AWS credentials found for ${where}: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE, or run with an instance or task role`,
      options,
    );
  }
  if (name === 'RequestTimeTooSkewed') {
    // A 403, but not about the credentials: the SDK corrects its clock offset from this answer, so a retry is signed right.
    return new StoreError('transient', `cannot ${at}: the local clock is off from the server's (${name})`, options);
  }
  if (AUTH_CODES.has(name) || status === 403 || status === 401) {
    const fix = BAD_CREDENTIAL_CODES.has(name)
      ? 'the credentials are wrong or expired: check AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN or AWS_PROFILE'
      : `check the credentials (AWS_ACCESS_KEY_ID, AWS_PROFILE or the role) and that they may read and write s3://${context.bucket}`;
    return new StoreError('auth', `cannot ${at}: access denied (${name === 'Error' ? `HTTP ${status}` : name}): ${fix}`, options);
  }
  if (name === 'NoSuchBucket') {
    return new StoreError(
      'not-found',
      `bucket "${context.bucket}" does not exist at ${context.endpoint}: create it first, or fix the stream URL${context.customEndpoint ? ' or the endpoint' : ' or the region'}`,
      options,
    );
  }
  if (context.phase === 'open' && status === 404) {
    return new StoreError(
      'not-found',
      `bucket "${context.bucket}" not found at ${context.endpoint} (HTTP 404, ${name}): check the bucket name, and that the endpoint is an S3 server`,
      options,
    );
  }
  if (isPreconditionError(error)) {
    return new StoreError('precondition', `${context.key ?? 'object'} in ${where} changed or exists (${name})`, options);
  }
  if (
    name === 'PermanentRedirect' ||
    name === 'AuthorizationHeaderMalformed' ||
    name === 'IllegalLocationConstraintException' ||
    status === 301
  ) {
    return new StoreError(
      'fatal',
      `cannot ${at}: the bucket is in another region (${name}): pass its region with --s3-region or AWS_REGION`,
      options,
    );
  }
  if (THROTTLE_CODES.has(name) || status === 429) {
    return new StoreError('throttled', `cannot ${at}: the server asks to slow down (${name})`, options);
  }
  if (code !== undefined && UNREACHABLE_CODES.has(code)) {
    const message = `cannot ${at}: ${code === 'ECONNREFUSED' ? 'connection refused' : 'unknown host'} (${code})`;
    if (context.phase === 'open') {
      const fix = context.customEndpoint
        ? 'check --s3-endpoint / AWS_ENDPOINT_URL_S3 and that the server runs'
        : 'check the network and DNS';
      return new StoreError('fatal', `${message}: ${fix}`, options);
    }
    return new StoreError('transient', message, options);
  }
  const noConnection = code === 'UND_ERR_CONNECT_TIMEOUT' || (name === 'TimeoutError' && /establish a connection/.test(facts.message));
  if (noConnection && context.phase === 'open') {
    return new StoreError('fatal', `cannot ${at}: no connection within the timeout: check the endpoint and the network`, options);
  }
  if (name === 'NotImplemented' || status === 501) {
    return new StoreError(
      'fatal',
      `cannot ${at}: the server does not implement this request (${name}): it cannot be used as a bucketpipe store`,
      options,
    );
  }
  if (TRANSIENT_CODES.has(name) || (status !== undefined && status >= 500) || (code !== undefined && NETWORK_CODES.has(code))) {
    return new StoreError(
      'transient',
      `cannot ${at}: ${name}${status === undefined ? '' : ` (HTTP ${status})`}: ${facts.message}`,
      options,
    );
  }
  return new StoreError('fatal', `cannot ${at}: ${name}${status === undefined ? '' : ` (HTTP ${status})`}: ${facts.message}`, options);
}

function oneLine(text: string): string {
  const line = text.replace(/\s+/g, ' ').trim();
  return line.length > 300 ? `${line.slice(0, 297)}…` : line;
}
