import { StoreError } from '@bucketpipe/core';
import { ApiError } from '@google-cloud/storage';
import { describe, expect, it } from 'vitest';
import { type ErrorContext, networkCodeOf, statusOf, toStoreError } from './errors.js';

const context: ErrorContext = { action: 'write', bucket: 'tank-backups', object: 'pg/chunks/000000000001', key: 'chunks/000000000001' };
const custom: ErrorContext = { ...context, endpoint: 'http://127.0.0.1:4443' };

/** The shapes @google-cloud/storage v7 rejects with, as seen against the test server. */
const apiError = (code: number, message: string) => Object.assign(new ApiError(message), { code, errors: [{ reason: 'x', message }] });
const gaxiosError = (status: number) =>
  Object.assign(new Error(`Request failed with status code ${status}`), { status, response: { status } });
const uploadBodyError = (code: number) => ({ code, message: 'At least one of the pre-conditions you specified did not hold.', errors: [] });
const fetchError = (code: string) =>
  Object.assign(new Error(`request to http://127.0.0.1:4443/storage/v1/b/x/o failed, reason: connect ${code} 127.0.0.1:4443`), {
    type: 'system',
    code,
    errno: code,
  });

describe('statusOf', () => {
  it('finds the HTTP status in ApiError.code, GaxiosError.status/response.status and plain upload error bodies', () => {
    expect(statusOf(apiError(412, 'x'))).toBe(412);
    expect(statusOf(gaxiosError(503))).toBe(503);
    expect(statusOf(uploadBodyError(412))).toBe(412);
    expect(statusOf(fetchError('ECONNREFUSED'))).toBeUndefined();
    expect(statusOf(Object.assign(new Error('x'), { code: '429' }))).toBe(429);
    expect(statusOf(null)).toBeUndefined();
    expect(statusOf('boom')).toBeUndefined();
  });
});

describe('networkCodeOf', () => {
  it('reads errno codes, through cause chains, and recognises hang-ups and timeouts by message', () => {
    expect(networkCodeOf(fetchError('ECONNRESET'))).toBe('ECONNRESET');
    expect(networkCodeOf(new Error('wrapped', { cause: fetchError('ETIMEDOUT') }))).toBe('ETIMEDOUT');
    expect(networkCodeOf(new Error('socket hang up'))).toBe('ECONNRESET');
    expect(networkCodeOf(Object.assign(new Error('network timeout at: http://x'), { type: 'request-timeout' }))).toBe('ETIMEDOUT');
    expect(networkCodeOf(new Error('something else'))).toBeUndefined();
  });
});

describe('toStoreError', () => {
  const cases: Array<[string, unknown, StoreError['kind']]> = [
    ['412 (multipart, ApiError)', apiError(412, 'At least one of the pre-conditions you specified did not hold.'), 'precondition'],
    ['412 (resumable initiation, GaxiosError)', gaxiosError(412), 'precondition'],
    ['412 (resumable final chunk, plain error body)', uploadBodyError(412), 'precondition'],
    ['401', apiError(401, 'Login Required'), 'auth'],
    ['403', apiError(403, 'x@y.iam.gserviceaccount.com does not have storage.objects.create access'), 'auth'],
    ['404', apiError(404, 'The specified bucket does not exist.'), 'not-found'],
    ['429', apiError(429, 'rate limited'), 'throttled'],
    ['408', apiError(408, 'timeout'), 'transient'],
    ['500', apiError(500, 'Internal Error'), 'transient'],
    ['503 (GaxiosError)', gaxiosError(503), 'transient'],
    ['400', apiError(400, 'Invalid argument'), 'fatal'],
    ['ECONNRESET', fetchError('ECONNRESET'), 'transient'],
    ['ETIMEDOUT', fetchError('ETIMEDOUT'), 'transient'],
    ['EPIPE', fetchError('EPIPE'), 'transient'],
    ['socket hang up', new Error('socket hang up'), 'transient'],
    ['an unknown error', new Error('weird'), 'fatal'],
  ];
  for (const [name, error, kind] of cases) {
    it(`maps ${name} to '${kind}', keeping the cause and the key`, () => {
      const mapped = toStoreError(error, context);
      expect(mapped).toBeInstanceOf(StoreError);
      expect(mapped.kind).toBe(kind);
      expect(mapped.cause).toBe(error);
      expect(mapped.key).toBe('chunks/000000000001');
      expect(mapped.message).not.toContain('\n');
    });
  }

  it('says what to do about auth failures and missing credentials, naming the bucket', () => {
    for (const error of [apiError(401, 'Login Required'), apiError(403, 'denied')]) {
      const mapped = toStoreError(error, context);
      expect(mapped.message).toContain('gs://tank-backups');
      expect(mapped.message).toMatch(/gcloud auth application-default login/);
      expect(mapped.message).toMatch(/GOOGLE_APPLICATION_CREDENTIALS/);
    }
    const adc = new Error(
      'Could not load the default credentials. Browse to https://cloud.google.com/docs/authentication/getting-started for more information.',
    );
    const mapped = toStoreError(adc, { action: 'open', bucket: 'tank-backups', opening: true });
    expect(mapped.kind).toBe('auth');
    expect(mapped.message).toMatch(/^cannot open gs:\/\/tank-backups: no usable Google credentials/);
    expect(mapped.message).toMatch(/gcloud auth application-default login.*GOOGLE_APPLICATION_CREDENTIALS/);
  });

  it('names the bucket for a 404, and the endpoint when it is a custom one', () => {
    expect(toStoreError(apiError(404, 'The specified bucket does not exist.'), context).message).toMatch(
      /^bucket gs:\/\/tank-backups does not exist \(HTTP 404\): create it/,
    );
    expect(toStoreError(apiError(404, 'x'), custom).message).toContain('at http://127.0.0.1:4443');
  });

  it('a refused connection is fatal while opening (a wrong endpoint), transient afterwards (a restarting server)', () => {
    const atOpen = toStoreError(fetchError('ECONNREFUSED'), { ...custom, action: 'open', opening: true });
    expect(atOpen.kind).toBe('fatal');
    expect(atOpen.message).toContain('http://127.0.0.1:4443');
    expect(atOpen.message).toContain('--gcs-endpoint');
    expect(toStoreError(fetchError('ECONNREFUSED'), custom).kind).toBe('transient');
    expect(toStoreError(fetchError('ENOTFOUND'), { ...custom, opening: true }).kind).toBe('fatal');
  });

  it('reduces a JSON error body (as download errors carry it) to its message', () => {
    const body = JSON.stringify({ error: { code: 400, message: 'Invalid range', errors: [] } });
    const mapped = toStoreError(Object.assign(new Error(body), { code: 400 }), context);
    expect(mapped.message).toBe('cannot write gs://tank-backups/pg/chunks/000000000001: HTTP 400: Invalid range');
  });

  it('passes StoreErrors through unchanged', () => {
    const error = new StoreError('precondition', 'x');
    expect(toStoreError(error, context)).toBe(error);
  });
});
