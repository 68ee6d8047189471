import { S3ServiceException } from '@aws-sdk/client-s3';
import { describe, expect, it } from 'vitest';
import { formatIfMatch, PROBE_DIR, type ProbeTarget, probeConditionalSupport } from './conditional-probe.js';

const refused = () =>
  new S3ServiceException({ name: 'PreconditionFailed', $fault: 'client', $metadata: { httpStatusCode: 412 }, message: '' });

interface ServerRules {
  /** If-None-Match: * refused on an existing key. */
  honoursIfNoneMatch: boolean;
  /** Which If-Match forms compare at all ('none': the header is ignored). */
  ifMatch: 'quoted' | 'unquoted' | 'both' | 'none' | 'never-matches';
}

/** A small in-memory server with configurable conditional-write behaviour (the probe's side of the contract). */
function server(rules: ServerRules, fail?: { onCall: number; error: Error; applied?: boolean }) {
  const objects = new Map<string, string>();
  let version = 0;
  let calls = 0;
  const target: ProbeTarget = {
    async put(key, _body, condition) {
      calls++;
      const failsNow = fail !== undefined && calls === fail.onCall;
      if (failsNow && !fail.applied) throw fail.error;
      const current = objects.get(key);
      if (condition?.ifNoneMatch && rules.honoursIfNoneMatch && current !== undefined) throw refused();
      if (condition?.ifMatch !== undefined && rules.ifMatch !== 'none') {
        const quoted = condition.ifMatch.startsWith('"');
        const form = quoted ? 'quoted' : 'unquoted';
        const bare = condition.ifMatch.replace(/"/g, '');
        const formOk = rules.ifMatch === 'both' || rules.ifMatch === form;
        if (!formOk || current === undefined || bare !== current) throw refused();
      }
      const etag = `etag${++version}`;
      objects.set(key, etag);
      if (failsNow) throw fail.error; // applied, but the reply is lost
      return `"${etag}"`;
    },
    async remove(key) {
      calls++;
      if (fail !== undefined && calls === fail.onCall) {
        if (fail.applied) objects.delete(key);
        throw fail.error;
      }
      objects.delete(key);
    },
  };
  return { target, objects };
}

describe('probeConditionalSupport', () => {
  it.each([
    [
      { honoursIfNoneMatch: true, ifMatch: 'unquoted' },
      { createOnly: true, ifMatchForm: 'unquoted' },
    ],
    [
      { honoursIfNoneMatch: true, ifMatch: 'quoted' },
      { createOnly: true, ifMatchForm: 'quoted' },
    ],
    [
      { honoursIfNoneMatch: true, ifMatch: 'both' },
      { createOnly: true, ifMatchForm: 'quoted' },
    ],
    [
      { honoursIfNoneMatch: true, ifMatch: 'none' },
      { createOnly: true, ifMatchForm: null },
    ],
    [
      { honoursIfNoneMatch: true, ifMatch: 'never-matches' },
      { createOnly: true, ifMatchForm: null },
    ],
    [
      { honoursIfNoneMatch: false, ifMatch: 'both' },
      { createOnly: false, ifMatchForm: 'quoted' },
    ],
  ] as const)('server %j → %j, and leaves nothing behind', async (rules, expected) => {
    const { target, objects } = server(rules);
    expect(await probeConditionalSupport(target, 'stream/root/')).toEqual(expected);
    expect(objects.size).toBe(0);
  });

  it('writes under the root, in the store’s own dot directory', async () => {
    const keys: string[] = [];
    const { target } = server({ honoursIfNoneMatch: true, ifMatch: 'both' });
    const recording: ProbeTarget = {
      put: (key, body, condition) => {
        keys.push(key);
        return target.put(key, body, condition);
      },
      remove: target.remove,
    };
    await probeConditionalSupport(recording, 'a/b/');
    expect(keys.length).toBeGreaterThan(2);
    expect(new Set(keys).size).toBe(1);
    expect(keys[0]).toMatch(new RegExp(`^a/b/${PROBE_DIR.replace('.', '\\.')}/[0-9a-f-]{36}$`));
  });

  it('lets other errors through (read-only credentials, network), and cleans up what it wrote', async () => {
    const denied = new S3ServiceException({ name: 'AccessDenied', $fault: 'client', $metadata: { httpStatusCode: 403 }, message: '' });
    const first = server({ honoursIfNoneMatch: true, ifMatch: 'both' }, { onCall: 1, error: denied });
    await expect(probeConditionalSupport(first.target, '')).rejects.toBe(denied);
    const reset = Object.assign(new Error('socket hang up'), { code: 'ECONNRESET' });
    const later = server({ honoursIfNoneMatch: true, ifMatch: 'both' }, { onCall: 3, error: reset });
    await expect(probeConditionalSupport(later.target, '')).rejects.toBe(reset);
    expect(later.objects.size).toBe(0);
  });
});

describe('probeConditionalSupport under a fault', () => {
  const reset = () => Object.assign(new Error('socket hang up'), { code: 'ECONNRESET' });
  const isRetryable = (error: unknown) => (error as { code?: string }).code === 'ECONNRESET';
  const retry = { attempts: 4, baseDelayMs: 1, maxDelayMs: 1 };
  // Every request of the probe in turn fails once: before it reaches the server, or after it was applied (the reply lost).
  const cases = [
    { honoursIfNoneMatch: true, ifMatch: 'unquoted' },
    { honoursIfNoneMatch: true, ifMatch: 'quoted' },
    { honoursIfNoneMatch: false, ifMatch: 'none' },
  ] as const;
  it.each(
    cases.flatMap((rules) => [false, true].flatMap((applied) => [1, 2, 3, 4, 5, 6, 7].map((onCall) => ({ rules, applied, onCall })))),
  )('repeats a reset request and still finds what the server does: %j', async ({ rules, applied, onCall }) => {
    const expected = await probeConditionalSupport(server(rules).target, '');
    const { target, objects } = server(rules, { onCall, error: reset(), applied });
    expect(await probeConditionalSupport(target, '', { isRetryable, retry })).toEqual(expected);
    expect(objects.size).toBe(0);
  });

  it('gives up with the request’s own error after the retry policy’s attempts', async () => {
    const error = reset();
    const target: ProbeTarget = {
      put: () => Promise.reject(error),
      remove: () => Promise.resolve(),
    };
    await expect(probeConditionalSupport(target, '', { isRetryable, retry })).rejects.toBe(error);
  });
});

describe('formatIfMatch', () => {
  it('adds or strips the quotes (and a weak prefix)', () => {
    expect(formatIfMatch('"abc"', 'quoted')).toBe('"abc"');
    expect(formatIfMatch('abc', 'quoted')).toBe('"abc"');
    expect(formatIfMatch('"abc"', 'unquoted')).toBe('abc');
    expect(formatIfMatch('W/"abc"', 'unquoted')).toBe('abc');
    expect(formatIfMatch('"abc-3"', 'unquoted')).toBe('abc-3');
  });
});
