import { UsageError } from '@bucketpipe/core';
import { describe, expect, it } from 'vitest';
import { parseOpenOptions } from './options.js';

describe('parseOpenOptions', () => {
  it('reads gcsEndpoint as an http(s) URL without trailing slashes, and concurrency as a positive integer', () => {
    expect(parseOpenOptions({})).toEqual({ endpoint: undefined, concurrency: undefined });
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
});
