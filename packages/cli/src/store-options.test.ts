import { describe, expect, it } from 'vitest';
import { defaultConcurrency, storeOpenOptions } from './store-options.js';

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

describe('storeOpenOptions', () => {
  const withDirectIo = (value: string | undefined) => {
    const saved = process.env.BUCKETPIPE_DIRECT_IO;
    if (value === undefined) delete process.env.BUCKETPIPE_DIRECT_IO;
    else process.env.BUCKETPIPE_DIRECT_IO = value;
    try {
      return storeOpenOptions({}).directIo;
    } finally {
      if (saved === undefined) delete process.env.BUCKETPIPE_DIRECT_IO;
      else process.env.BUCKETPIPE_DIRECT_IO = saved;
    }
  };

  it('asks for O_DIRECT unless BUCKETPIPE_DIRECT_IO turns it off', () => {
    expect(withDirectIo(undefined)).toBe(true);
    expect(withDirectIo('1')).toBe(true);
    expect(withDirectIo('')).toBe(true);
    for (const off of ['0', 'false', 'NO', ' off ']) expect(withDirectIo(off), off).toBe(false);
  });
});
