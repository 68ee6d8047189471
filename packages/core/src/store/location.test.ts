import { resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ExitCode, UsageError } from '../errors.js';
import { openStore, parseStreamUrl, registeredSchemes, registerStoreFactory, type StreamLocation } from './location.js';
import type { ObjectStore } from './store.js';

function urlError(text: string): UsageError {
  try {
    parseStreamUrl(text);
  } catch (error) {
    expect(error).toBeInstanceOf(UsageError);
    const usage = error as UsageError;
    expect(usage.exitCode).toBe(ExitCode.usage);
    return usage;
  }
  throw new Error(`parseStreamUrl accepted ${JSON.stringify(text)}`);
}

describe('parseStreamUrl: local directories', () => {
  it('resolves a plain relative path against the working directory', () => {
    const path = resolve(process.cwd(), 'transfer/pgdata');
    expect(parseStreamUrl('transfer/pgdata')).toEqual({ scheme: 'file', path, href: `file://${path}` });
    expect(parseStreamUrl('./transfer/../transfer/pgdata/')).toEqual({ scheme: 'file', path, href: `file://${path}` });
    expect(parseStreamUrl('.')).toEqual({ scheme: 'file', path: process.cwd(), href: `file://${process.cwd()}` });
  });

  it('normalises a plain absolute path and trims surrounding blanks', () => {
    expect(parseStreamUrl('/mnt/transfer/pgdata')).toEqual({
      scheme: 'file',
      path: '/mnt/transfer/pgdata',
      href: 'file:///mnt/transfer/pgdata',
    });
    expect(parseStreamUrl('  /mnt//transfer/./pgdata/  ')).toEqual({
      scheme: 'file',
      path: '/mnt/transfer/pgdata',
      href: 'file:///mnt/transfer/pgdata',
    });
  });

  it('reads file:/// URLs, decoding percent escapes and resolving dot segments', () => {
    expect(parseStreamUrl('file:///mnt/transfer/pgdata')).toEqual({
      scheme: 'file',
      path: '/mnt/transfer/pgdata',
      href: 'file:///mnt/transfer/pgdata',
    });
    expect(parseStreamUrl('FILE:///mnt/a/../b/')).toMatchObject({ scheme: 'file', path: '/mnt/b' });
    expect(parseStreamUrl('file:///mnt/my%20data')).toMatchObject({ scheme: 'file', path: '/mnt/my data' });
    expect(parseStreamUrl('file://localhost/mnt/x')).toMatchObject({ scheme: 'file', path: '/mnt/x' });
  });

  it('rejects file:// URLs with a host', () => {
    const error = urlError('file://otherhost/mnt/x');
    expect(error.code).toBe('BP_URL');
    expect(error.message).toMatch(/^invalid file URL "file:\/\/otherhost\/mnt\/x" .*use file:\/\/\/absolute\/path$/);
  });

  it('rejects an empty URL and scheme-like text without //', () => {
    for (const text of ['', '   ']) {
      const error = urlError(text);
      expect(error.code).toBe('BP_URL');
      expect(error.message).toMatch(/^missing stream URL/);
    }
    for (const text of ['s3:bucket/prefix', 'file:/mnt/x', 'gs:b']) {
      const error = urlError(text);
      expect(error.code).toBe('BP_URL');
      expect(error.message).toContain('write it as scheme://');
    }
  });
});

describe('parseStreamUrl: bucket URLs', () => {
  it('splits bucket and prefix and normalises leading and trailing slashes', () => {
    const expected: StreamLocation = { scheme: 's3', bucket: 'bucket', prefix: 'migrations/pgdata', href: 's3://bucket/migrations/pgdata' };
    expect(parseStreamUrl('s3://bucket/migrations/pgdata')).toEqual(expected);
    expect(parseStreamUrl('s3://bucket/migrations/pgdata/')).toEqual(expected);
    expect(parseStreamUrl('s3://bucket///migrations/pgdata//')).toEqual(expected);
    expect(parseStreamUrl(' S3://bucket/migrations/pgdata ')).toEqual(expected);
  });

  it('allows the bucket root as the stream root', () => {
    const expected = { scheme: 'gs', bucket: 'b', prefix: '', href: 'gs://b' };
    expect(parseStreamUrl('gs://b')).toEqual(expected);
    expect(parseStreamUrl('gs://b/')).toEqual(expected);
    expect(parseStreamUrl('gs://b//')).toEqual(expected);
  });

  it('keeps any other scheme for the registry to decide', () => {
    expect(parseStreamUrl('ftp://host/dir')).toEqual({ scheme: 'ftp', bucket: 'host', prefix: 'dir', href: 'ftp://host/dir' });
  });

  it('rejects a URL without a bucket', () => {
    for (const text of ['s3://', 's3:///prefix', 'gs:///']) {
      const error = urlError(text);
      expect(error.code).toBe('BP_URL');
      expect(error.message).toContain('names no bucket');
    }
  });

  it('rejects "." and ".." segments in the prefix', () => {
    for (const text of ['s3://b/a/../c', 's3://b/..', 's3://b/./c', 'gs://b/a/..']) {
      const error = urlError(text);
      expect(error.code).toBe('BP_URL');
      expect(error.message).toContain('has an empty, "." or ".." path segment');
    }
    // dots inside a segment are ordinary characters
    expect(parseStreamUrl('s3://b/v1.2/..x')).toMatchObject({ prefix: 'v1.2/..x' });
  });
});

describe('parseStreamUrl: what bucket URLs may not contain', () => {
  it('rejects empty segments, queries and fragments', () => {
    expect(() => parseStreamUrl('s3://b/a//c')).toThrow(/has an empty, "\." or "\.\." path segment/);
    expect(() => parseStreamUrl('s3://b/p?versionId=1')).toThrow(/has a query or fragment/);
    expect(() => parseStreamUrl('gs://b/p#x')).toThrow(/has a query or fragment/);
  });

  it('percent-encodes local paths in the href', () => {
    expect(parseStreamUrl('/tmp/a b#c').href).toBe('file:///tmp/a%20b%23c');
  });
});

describe('openStore', () => {
  it('rejects an unregistered scheme with BP_URL_SCHEME', async () => {
    const error = await openStore('nosuchscheme://bucket/prefix').then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(UsageError);
    expect((error as UsageError).code).toBe('BP_URL_SCHEME');
    expect((error as UsageError).exitCode).toBe(ExitCode.usage);
    expect((error as UsageError).message).toContain('unknown URL scheme "nosuchscheme://"');
  });

  it('passes a URL syntax error through as BP_URL', async () => {
    await expect(openStore('s3://')).rejects.toMatchObject({ code: 'BP_URL' });
  });

  it('hands the parsed location and options to the factory registered for the scheme', async () => {
    const store = { description: 'fake' } as unknown as ObjectStore;
    const calls: unknown[] = [];
    registerStoreFactory('unit-test', async (location, options) => {
      calls.push({ location, options });
      return store;
    });
    expect(registeredSchemes()).toContain('unit-test');
    await expect(openStore('unit-test://bkt/a/b/', { endpoint: 'http://127.0.0.1:9000' })).resolves.toBe(store);
    expect(calls).toEqual([
      {
        location: { scheme: 'unit-test', bucket: 'bkt', prefix: 'a/b', href: 'unit-test://bkt/a/b' },
        options: { endpoint: 'http://127.0.0.1:9000' },
      },
    ]);
  });
});
