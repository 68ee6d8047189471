import { describe, expect, it } from 'vitest';
import { defaultConcurrency } from './store-options.js';

describe('defaultConcurrency', () => {
  it('is 16 for a stream in S3 or GCS, where the round trip caps each connection', () => {
    expect(defaultConcurrency('s3://bucket/stream')).toBe(16);
    expect(defaultConcurrency('gs://bucket/stream')).toBe(16);
    expect(defaultConcurrency('S3://bucket/stream')).toBe(16);
  });

  it('is 8 for a directory, given as a path or a file:// URL', () => {
    expect(defaultConcurrency('/srv/streams/db1')).toBe(8);
    expect(defaultConcurrency('file:///srv/streams/db1')).toBe(8);
    expect(defaultConcurrency('streams/s3:/not-a-url')).toBe(8);
  });
});
