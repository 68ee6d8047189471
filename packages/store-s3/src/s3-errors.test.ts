import { NoSuchBucket, NoSuchKey, S3ServiceException } from '@aws-sdk/client-s3';
import { StoreError } from '@bucketpipe/core';
import { errors as undiciErrors } from 'undici';
import { describe, expect, it } from 'vitest';
import { type ErrorContext, isNotFound, isPreconditionError, toStoreError } from './s3-errors.js';

const context: ErrorContext = {
  bucket: 'my-bucket',
  endpoint: 'http://127.0.0.1:7480',
  customEndpoint: true,
  action: 'write',
  key: 'manifest.json',
};

/** An error as the SDK builds it from an S3 XML error answer. */
function s3Error(name: string, status: number, message = `${name} happened`): S3ServiceException {
  return new S3ServiceException({ name, $fault: status >= 500 ? 'server' : 'client', $metadata: { httpStatusCode: status }, message });
}

function networkError(code: string, message = `connect ${code} 127.0.0.1:1`): Error {
  return Object.assign(new Error(message), { code, $metadata: {} });
}

describe('toStoreError', () => {
  it.each([
    ['PreconditionFailed', 412, 'precondition'],
    ['ConditionalRequestConflict', 409, 'precondition'],
    ['AccessDenied', 403, 'auth'],
    ['InvalidAccessKeyId', 403, 'auth'],
    ['SignatureDoesNotMatch', 403, 'auth'],
    ['ExpiredToken', 400, 'auth'],
    ['Forbidden', 403, 'auth'],
    ['NoSuchBucket', 404, 'not-found'],
    ['SlowDown', 503, 'throttled'],
    ['TooManyRequests', 429, 'throttled'],
    ['ServiceUnavailable', 503, 'transient'],
    ['InternalError', 500, 'transient'],
    ['BadGateway', 502, 'transient'],
    ['RequestTimeout', 400, 'transient'],
    ['RequestTimeTooSkewed', 403, 'transient'],
    ['EntityTooLarge', 400, 'fatal'],
    ['NotImplemented', 501, 'fatal'],
    ['InvalidArgument', 400, 'fatal'],
    ['PermanentRedirect', 301, 'fatal'],
  ] as const)('%s (HTTP %d) is %s', (name, status, kind) => {
    const error = toStoreError(s3Error(name, status), context);
    expect(error).toBeInstanceOf(StoreError);
    expect(error.kind).toBe(kind);
    expect(error.key).toBe('manifest.json');
    expect(error.message).not.toContain('\n');
  });

  it('maps the SDK’s own exception classes by name', () => {
    expect(toStoreError(new NoSuchBucket({ $metadata: { httpStatusCode: 404 }, message: 'gone' }), context).kind).toBe('not-found');
    expect(isNotFound(new NoSuchKey({ $metadata: { httpStatusCode: 404 }, message: 'gone' }))).toBe(true);
    expect(isNotFound(new NoSuchBucket({ $metadata: { httpStatusCode: 404 }, message: 'gone' }))).toBe(false);
  });

  it('a 404 without a body (HEAD) is an absent object; a 412 without a body is a failed condition', () => {
    expect(isNotFound(s3Error('NotFound', 404))).toBe(true);
    expect(isNotFound(s3Error('UnknownError', 404))).toBe(true);
    expect(isPreconditionError(s3Error('UnknownError', 412))).toBe(true);
  });

  it('auth messages name the bucket and the fix, and carry only the error code, never the server text', () => {
    const wrongSecret = toStoreError(s3Error('SignatureDoesNotMatch', 403, 'StringToSign AWS4-HMAC-SHA256 secret-ish details'), context);
    expect(wrongSecret.message).toContain('s3://my-bucket');
    expect(wrongSecret.message).toContain('AWS_ACCESS_KEY_ID');
    expect(wrongSecret.message).toContain('SignatureDoesNotMatch');
    expect(wrongSecret.message).not.toContain('StringToSign');
    const denied = toStoreError(s3Error('AccessDenied', 403), context);
    expect(denied.message).toContain('may read and write s3://my-bucket');
  });

  it('missing credentials are auth, with the ways to provide them', () => {
    const missing = Object.assign(new Error('Could not load credentials from any providers'), { name: 'CredentialsProviderError' });
    const error = toStoreError(missing, context);
    expect(error.kind).toBe('auth');
    expect(error.message).toContain('AWS_PROFILE');
  });

  it('a missing bucket names the bucket and the endpoint', () => {
    const error = toStoreError(s3Error('NoSuchBucket', 404), context);
    expect(error.message).toContain('"my-bucket"');
    expect(error.message).toContain('http://127.0.0.1:7480');
  });

  it('network failures are transient during a transfer', () => {
    for (const code of ['ECONNRESET', 'EPIPE', 'ETIMEDOUT', 'EAI_AGAIN', 'ECONNREFUSED', 'ENOTFOUND']) {
      expect(toStoreError(networkError(code), context).kind, code).toBe('transient');
    }
    const timeout = Object.assign(new Error('the request socket timed out after 120000 ms of inactivity'), { name: 'TimeoutError' });
    expect(toStoreError(timeout, context).kind).toBe('transient');
  });

  it('undici’s network errors are transient during a transfer (as UndiciHttpHandler hands them on, and raw from a body)', () => {
    const failures = [
      new undiciErrors.SocketError('other side closed'),
      new undiciErrors.ConnectTimeoutError(),
      new undiciErrors.HeadersTimeoutError(),
      new undiciErrors.BodyTimeoutError(),
      new undiciErrors.ResponseContentLengthMismatchError(),
    ];
    for (const raw of failures) {
      expect(toStoreError(raw, context).kind, raw.code).toBe('transient');
      const renamed = Object.assign(Object.create(raw) as Error, { name: 'TimeoutError' });
      expect(toStoreError(renamed, context).kind, `${raw.code} as TimeoutError`).toBe('transient');
    }
    expect(toStoreError(new undiciErrors.SocketError('other side closed'), context).message).toContain('other side closed');
  });

  it('undici’s connect timeout at open is fatal, like NodeHttpHandler’s', () => {
    const open = { ...context, phase: 'open' as const, action: 'list', key: undefined };
    const error = toStoreError(Object.assign(new undiciErrors.ConnectTimeoutError(), { name: 'TimeoutError' }), open);
    expect(error.kind).toBe('fatal');
    expect(error.message).toContain('no connection within the timeout');
  });

  it('an unreachable endpoint at open is fatal at once, naming the endpoint and the fix', () => {
    const open = { ...context, phase: 'open' as const, action: 'list', key: undefined };
    for (const code of ['ECONNREFUSED', 'ENOTFOUND']) {
      const error = toStoreError(networkError(code), open);
      expect(error.kind).toBe('fatal');
      expect(error.message).toContain('http://127.0.0.1:7480');
      expect(error.message).toContain('--s3-endpoint');
    }
    const noConnection = Object.assign(new Error('the request socket did not establish a connection with the server within 5000 ms'), {
      name: 'TimeoutError',
    });
    expect(toStoreError(noConnection, open).kind).toBe('fatal');
  });

  it('passes a StoreError through unchanged', () => {
    const original = new StoreError('precondition', 'x');
    expect(toStoreError(original, context)).toBe(original);
  });
});

describe('toStoreError at open', () => {
  it('a 404 without an S3 error code (not an S3 server, or no such bucket) is not-found, naming the endpoint', () => {
    const error = toStoreError(s3Error('UnknownError', 404), { ...context, phase: 'open', action: 'open', key: undefined });
    expect(error.kind).toBe('not-found');
    expect(error.message).toContain('http://127.0.0.1:7480');
    expect(error.message).toContain('S3 server');
  });
});
