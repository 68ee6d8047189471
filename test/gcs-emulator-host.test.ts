import { randomUUID } from 'node:crypto';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { errorLine, MiB, outputFile, run, sha256File, summaryOf, tempDir, writeMixedStream } from './helpers.js';
import { GCS_TEST_BUCKET } from './servers/gcs.js';

// The README's promise: STORAGE_EMULATOR_HOST alone (no --gcs-endpoint) points the CLI at a GCS
// JSON API server. The test server, like Google, serves the API under /storage/v1 only, so a client
// that took the variable verbatim as its API base would get a 404 for the bucket here.
const gcs = inject('gcs');
const env = { ...process.env, STORAGE_EMULATOR_HOST: gcs.endpoint };

describe('STORAGE_EMULATOR_HOST as the only GCS configuration', () => {
  let work: Awaited<ReturnType<typeof tempDir>>;
  beforeAll(async () => {
    work = await tempDir('emulator-host');
  });
  afterAll(() => work.cleanup());

  it('sends and receives a stream, byte for byte', async () => {
    const dir = work.path;
    const input = join(dir, 'input');
    await writeMixedStream(input, 8 * MiB, 3);
    const url = `gs://${GCS_TEST_BUCKET}/emulator-${randomUUID().slice(0, 8)}`;

    const sent = await run(['send', url, '--chunk-size', '1MiB', '-q', '--', 'cat', input], { env });
    expect(sent.code, sent.stderr).toBe(0);

    const outputPath = join(dir, 'output');
    const out = await outputFile(outputPath);
    const received = await run(['receive', url, '-q'], { env, stdoutFile: out.fd }).finally(() => out.close());
    expect(received.code, received.stderr).toBe(0);
    expect(summaryOf(received.stderr)).toMatchObject({ command: 'receive', rawBytes: 8 * MiB });
    expect(await sha256File(outputPath)).toBe(await sha256File(input));
  });

  it('refuses a variable that is not a URL in one line naming it', async () => {
    const result = await run(['inspect', `gs://${GCS_TEST_BUCKET}/x`], { env: { ...env, STORAGE_EMULATOR_HOST: 'ftp://127.0.0.1:1' } });
    expect(result.code, result.stderr).toBe(2);
    expect(errorLine(result.stderr)).toMatch(/STORAGE_EMULATOR_HOST "ftp:\/\/127\.0\.0\.1:1": expected/);
  });
});
