import { UsageError } from '@bucketpipe/core';
import { describe, expect, it } from 'vitest';
import { emulatorEndpoint, parseOpenOptions } from './options.js';

describe('parseOpenOptions', () => {
  it('reads gcsEndpoint as an http(s) URL without trailing slashes, and concurrency as a positive integer', () => {
    expect(parseOpenOptions({}, {})).toEqual({ endpoint: undefined, concurrency: undefined });
    expect(parseOpenOptions({ gcsEndpoint: 'http://127.0.0.1:4443/', concurrency: ' 8 ' })).toEqual({
      endpoint: 'http://127.0.0.1:4443',
      concurrency: 8,
    });
    expect(parseOpenOptions({ gcsEndpoint: 'https://gcs.example/prefix' }).endpoint).toBe('https://gcs.example/prefix');
  });

  it.each([['127.0.0.1:4443'], ['ftp://x'], ['http://x/?a=1'], [''], [true]])('refuses gcsEndpoint %j as a usage error', (value) => {
    expect(() => parseOpenOptions({ gcsEndpoint: value })).toThrow(UsageError);
  });

  it.each([['0'], ['-1'], ['1.5'], ['many'], [true]])('refuses concurrency %j as a usage error', (value) => {
    expect(() => parseOpenOptions({ concurrency: value })).toThrow(UsageError);
  });

  it('takes the endpoint from STORAGE_EMULATOR_HOST when gcsEndpoint is absent, and gcsEndpoint wins', () => {
    const env = { STORAGE_EMULATOR_HOST: 'http://127.0.0.1:4443' };
    expect(parseOpenOptions({}, env).endpoint).toBe('http://127.0.0.1:4443');
    expect(parseOpenOptions({ gcsEndpoint: 'http://127.0.0.1:9000' }, env).endpoint).toBe('http://127.0.0.1:9000');
  });
});

describe('emulatorEndpoint', () => {
  it.each([
    ['http://127.0.0.1:4443', 'http://127.0.0.1:4443'],
    ['http://127.0.0.1:4443/', 'http://127.0.0.1:4443'],
    ['127.0.0.1:4443', 'http://127.0.0.1:4443'],
    ['http://127.0.0.1:4443/storage/v1', 'http://127.0.0.1:4443'],
    ['https://gcs.example/base/storage/v1/', 'https://gcs.example/base'],
  ])('reads %j as the server root %j', (value, expected) => {
    expect(emulatorEndpoint(value)).toBe(expected);
  });

  it('is undefined when the variable is unset or empty', () => {
    expect(emulatorEndpoint(undefined)).toBeUndefined();
    expect(emulatorEndpoint('  ')).toBeUndefined();
  });

  it.each([['ftp://x'], ['http://x/?a=1'], ['http://x#y']])('refuses %j as a usage error naming the variable', (value) => {
    expect(() => emulatorEndpoint(value)).toThrow(/^STORAGE_EMULATOR_HOST .*e\.g\. http:\/\/127\.0\.0\.1:4443/);
    expect(() => emulatorEndpoint(value)).toThrow(UsageError);
  });
});
