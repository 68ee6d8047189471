import { createServer } from 'node:net';
import { describe, expect, inject, it } from 'vitest';
import { errorLine, run, s3Env } from './helpers.js';
import { GCS_TEST_BUCKET } from './servers/gcs.js';

// Wrong credentials, a missing bucket, a wrong endpoint: each must end in one clear line that names
// the bucket (or endpoint) and the fix, a non-zero exit, and no retry storm — within seconds.
const s3 = inject('s3');
const gcs = inject('gcs');
const goodEnv = s3Env(s3);
const FAST_MS = 10_000;

/** A port on 127.0.0.1 that nothing listens on. */
async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  if (address === null || typeof address === 'string') throw new Error('no port');
  return address.port;
}

async function timed(args: string[], env: NodeJS.ProcessEnv) {
  const started = performance.now();
  const result = await run(args, { env });
  return { ...result, ms: performance.now() - started, line: errorLine(result.stderr) };
}

describe('S3 errors surface at once, in one line', () => {
  const s3Args = ['--s3-endpoint', s3.endpoint, '--s3-path-style'];

  it.each(['send', 'receive', 'inspect'])('%s: wrong credentials name the bucket and the fix', async (command) => {
    const env = { ...goodEnv, AWS_SECRET_ACCESS_KEY: 'not-the-secret-0123456789' };
    const args = command === 'send' ? ['send', 's3://any-bucket/x', ...s3Args, '--', 'true'] : [command, 's3://any-bucket/x', ...s3Args];
    const result = await timed(args, env);
    expect(result.code, result.stderr).toBe(3);
    expect(result.line).toMatch(/any-bucket/);
    expect(result.line).toMatch(/credential|access|AWS_/i);
    expect(result.stderr).not.toContain('not-the-secret');
    expect(result.ms).toBeLessThan(FAST_MS);
  });

  it('a missing bucket is named, with the fix', async () => {
    const result = await timed(['send', 's3://no-such-bucket-here/x', ...s3Args, '--', 'true'], goodEnv);
    expect(result.code, result.stderr).toBe(3);
    expect(result.line).toMatch(/no-such-bucket-here/);
    expect(result.line).toMatch(/does not exist|not found|no such bucket/i);
    expect(result.ms).toBeLessThan(FAST_MS);
  });

  it('a wrong endpoint (nothing listening) is named, fast', async () => {
    const port = await closedPort();
    const result = await timed(['receive', 's3://some-bucket/x', '--s3-endpoint', `http://127.0.0.1:${port}`, '--s3-path-style'], goodEnv);
    expect(result.code, result.stderr).not.toBe(0);
    expect(result.line).toMatch(new RegExp(`127\\.0\\.0\\.1:${port}`));
    expect(result.ms).toBeLessThan(FAST_MS);
  });
});

describe('GCS errors surface at once, in one line', () => {
  it('a missing bucket is named, with the fix', async () => {
    const result = await timed(['receive', 'gs://no-such-gcs-bucket/x', '--gcs-endpoint', gcs.endpoint], process.env);
    expect(result.code, result.stderr).toBe(3);
    expect(result.line).toMatch(/no-such-gcs-bucket/);
    expect(result.ms).toBeLessThan(FAST_MS);
  });

  it('a wrong endpoint (nothing listening) is named, fast', async () => {
    const port = await closedPort();
    const result = await timed(['inspect', `gs://${GCS_TEST_BUCKET}/x`, '--gcs-endpoint', `http://127.0.0.1:${port}`], process.env);
    expect(result.code, result.stderr).not.toBe(0);
    expect(result.line).toMatch(new RegExp(`127\\.0\\.0\\.1:${port}`));
    expect(result.ms).toBeLessThan(FAST_MS);
  });

  it('inspect of a stream that does not exist (yet) says so, naming the URL', async () => {
    const result = await timed(['inspect', `gs://${GCS_TEST_BUCKET}/not-there-yet`, '--gcs-endpoint', gcs.endpoint], process.env);
    expect(result.code).toBe(3);
    expect(result.line).toMatch(/no stream at .*not-there-yet/);
  });
});
