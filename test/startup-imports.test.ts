import { open, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fixtures, MiB, run, tempDir } from './helpers.js';

// What a command loads decides its start-up: every process of a transfer pays it, and on a machine
// where each page first touched costs ~10 µs it is a visible part of a short transfer's CPU
// (docs/PERFORMANCE.md). The cloud store packages with their SDKs, and prom-client (with
// OpenTelemetry's API, ~100 modules), load only when a URL or an option needs them. A resolve hook
// records each module the real CLI imports, in its main thread and its codec threads.

// Path fragments of the modules that must stay out. Workspace packages resolve to their real paths
// (packages/…), not through node_modules. OpenTelemetry's API is required by prom-client from
// CommonJS, which the hook does not see: prom-client stands for it.
const optional = [
  '/node_modules/prom-client/',
  '/node_modules/@aws-sdk/',
  '/node_modules/@google-cloud/',
  '/packages/store-s3/',
  '/packages/store-gcs/',
];

describe('modules a command loads', () => {
  let dir: { path: string; cleanup: () => Promise<void> };
  let source: string;
  let stream: string;

  beforeAll(async () => {
    dir = await tempDir('startup-imports');
    source = join(dir.path, 'source');
    stream = join(dir.path, 'stream');
    await writeFile(source, Buffer.alloc(2 * MiB, 7));
  });
  afterAll(() => dir.cleanup());

  /** Runs the CLI with the hook (stdin from a file when given); returns the URLs of the modules it imported. */
  async function importsOf(label: string, args: string[], stdin?: string): Promise<string[]> {
    const log = join(dir.path, `${label}.imports`);
    await writeFile(log, '');
    const input = stdin ? await open(stdin) : undefined;
    try {
      const result = await run(args, {
        stdio: [input?.fd ?? 'ignore', 'pipe', 'pipe'],
        env: {
          ...process.env,
          NODE_OPTIONS: `--import ${join(fixtures, 'record-imports.mjs')}`,
          BUCKETPIPE_TEST_IMPORTS_LOG: log,
        },
      });
      expect(result.code, result.stderr).toBe(0);
    } finally {
      await input?.close();
    }
    return (await readFile(log, 'utf8')).split('\n').filter(Boolean);
  }

  const loaded = (urls: string[], fragment: string) => urls.some((url) => url.includes(fragment));

  it('send and receive on the local store load neither a cloud SDK nor the metrics libraries', async () => {
    for (const [label, args, stdin] of [
      ['send', ['send', stream, '--chunk-size', '1MiB'], source],
      ['receive', ['receive', stream, '-q'], undefined],
    ] as const) {
      const urls = await importsOf(label, [...args], stdin);
      // The hook sees the main thread's imports (pino, for JSON logs on a pipe) and the codec threads'.
      expect(
        urls.some((url) => url.endsWith('/codec/codec-worker.js')),
        label,
      ).toBe(true);
      expect(loaded(urls, '/node_modules/pino/'), label).toBe(true);
      expect(
        optional.filter((name) => loaded(urls, name)),
        label,
      ).toEqual([]);
    }
  });

  it('--metrics-addr loads prom-client', async () => {
    const urls = await importsOf('receive-metrics', ['receive', stream, '-q', '--metrics-addr', '127.0.0.1:0']);
    expect(loaded(urls, '/node_modules/prom-client/')).toBe(true);
  });
});
