import { StoreError } from '@bucketpipe/core';

/** Where a failed call went, for messages that name the thing and the fix. */
export interface ErrorContext {
  /** e.g. 'write', 'read', 'list', 'delete', 'open'. */
  action: string;
  bucket: string;
  /** Object name in the bucket (with the stream prefix), when the call was about one object. */
  object?: string;
  /** Store-relative key, for StoreError.key. */
  key?: string;
  /** The custom endpoint (--gcs-endpoint / STORAGE_EMULATOR_HOST), when one is used. */
  endpoint?: string;
  /** True while opening the store: a refused or unresolvable endpoint is then a configuration error, not a blip. */
  opening?: boolean;
}

const transientCodes = new Set([
  'ECONNRESET',
  'ETIMEDOUT',
  'EPIPE',
  'EAI_AGAIN',
  'ECONNABORTED',
  'ENETUNREACH',
  'EHOSTUNREACH',
  'UND_ERR_SOCKET',
]);

/** The HTTP status a client error carries, wherever this client put it (ApiError, GaxiosError, upload errors, plain objects). */
export function statusOf(error: unknown): number | undefined {
  if (typeof error !== 'object' || error === null) return undefined;
  const e = error as { code?: unknown; status?: unknown; response?: { status?: unknown } };
  for (const candidate of [e.response?.status, e.status, e.code]) {
    const n = typeof candidate === 'string' && /^\d{3}$/.test(candidate) ? Number(candidate) : candidate;
    if (typeof n === 'number' && n >= 100 && n < 600) return n;
  }
  return undefined;
}

/** The errno-style code (ECONNREFUSED, …) of a network failure, looking through `cause` chains. */
export function networkCodeOf(error: unknown): string | undefined {
  for (let e = error, depth = 0; typeof e === 'object' && e !== null && depth < 5; depth++) {
    const code = (e as { code?: unknown; errno?: unknown }).code;
    if (typeof code === 'string' && /^E[A-Z_]+$|^UND_ERR/.test(code)) return code;
    const errno = (e as { errno?: unknown }).errno;
    if (typeof errno === 'string' && /^E[A-Z_]+$/.test(errno)) return errno;
    e = (e as { cause?: unknown }).cause;
  }
  const message = messageOf(error);
  return /socket hang up/i.test(message)
    ? 'ECONNRESET'
    : /network timeout|request timed out|timeout of \d+ms/i.test(message)
      ? 'ETIMEDOUT'
      : undefined;
}

function messageOf(error: unknown): string {
  if (typeof error === 'object' && error !== null && typeof (error as { message?: unknown }).message === 'string') {
    return (error as { message: string }).message;
  }
  return String(error);
}

/** First line of a server message, with JSON error bodies reduced to their `message`. */
function serverMessage(error: unknown): string {
  let text = messageOf(error).trim();
  try {
    const parsed = JSON.parse(text) as { error?: { message?: unknown } };
    if (typeof parsed.error?.message === 'string') text = parsed.error.message;
  } catch {
    // not JSON: keep the text
  }
  return text.split('\n')[0]?.slice(0, 300) ?? '';
}

const credentialProblem =
  /could not load the default credentials|could not refresh access token|invalid_grant|unable to detect a project id|error while making request: getaddrinfo .*metadata|invalid_rapt|reauth/i;

/**
 * Maps whatever @google-cloud/storage threw to a StoreError whose kind the retry policy keys off:
 * 412 precondition; 401/403 and missing credentials auth; 404 not-found (the bucket); 429 throttled;
 * 408, 5xx, resets and timeouts transient; a refused or unknown endpoint at open fatal; the rest fatal.
 */
export function toStoreError(error: unknown, context: ErrorContext): StoreError {
  if (error instanceof StoreError) return error;
  const where = context.object === undefined ? `gs://${context.bucket}` : `gs://${context.bucket}/${context.object}`;
  const at = `cannot ${context.action} ${where}`;
  const options = { key: context.key, cause: error };
  const status = statusOf(error);
  const detail = serverMessage(error);

  if (status === undefined && credentialProblem.test(messageOf(error))) {
    return new StoreError(
      'auth',
      `${at}: no usable Google credentials (${detail}): run \`gcloud auth application-default login\` or set GOOGLE_APPLICATION_CREDENTIALS to a service account key file`,
      options,
    );
  }
  switch (status) {
    case 412:
      return new StoreError('precondition', `${at}: the object changed or exists (HTTP 412 precondition failed)`, options);
    case 401:
      return new StoreError(
        'auth',
        `${at}: not authenticated (HTTP 401: ${detail}): run \`gcloud auth application-default login\` or set GOOGLE_APPLICATION_CREDENTIALS`,
        options,
      );
    case 403:
      return new StoreError(
        'auth',
        `${at}: permission denied (HTTP 403: ${detail}): grant the account a role on bucket ${context.bucket} (e.g. roles/storage.objectAdmin to send, objectViewer to receive), or use other credentials via \`gcloud auth application-default login\` / GOOGLE_APPLICATION_CREDENTIALS`,
        options,
      );
    case 404:
      return new StoreError(
        'not-found',
        `bucket gs://${context.bucket} does not exist${context.endpoint ? ` at ${context.endpoint}` : ''} (HTTP 404): create it (gcloud storage buckets create gs://${context.bucket}) or fix the stream URL`,
        options,
      );
    case 429:
      return new StoreError('throttled', `${at}: rate limited by Cloud Storage (HTTP 429)`, options);
    case 408:
      return new StoreError('transient', `${at}: request timeout (HTTP 408)`, options);
    case undefined:
      break;
    default:
      if (status >= 500) return new StoreError('transient', `${at}: server error (HTTP ${status}: ${detail})`, options);
      return new StoreError('fatal', `${at}: HTTP ${status}: ${detail}`, options);
  }

  const code = networkCodeOf(error);
  const endpoint = context.endpoint ?? 'https://storage.googleapis.com';
  if (code === 'ECONNREFUSED' || code === 'ENOTFOUND') {
    const what = code === 'ECONNREFUSED' ? 'connection refused' : 'host not found';
    const message = `${at}: ${what} by GCS endpoint ${endpoint} (${code})${context.endpoint ? ': is the server running, and is --gcs-endpoint (or STORAGE_EMULATOR_HOST) right?' : ''}`;
    // At open, a wrong endpoint should fail at once; later, a refused connection is a server restarting.
    return new StoreError(context.opening ? 'fatal' : 'transient', message, options);
  }
  if (code !== undefined && transientCodes.has(code)) {
    return new StoreError('transient', `${at}: network error talking to ${endpoint} (${code})`, options);
  }
  return new StoreError('fatal', `${at}: ${detail || 'unknown error'}`, options);
}
