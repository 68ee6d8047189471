import { setTimeout as sleep } from 'node:timers/promises';
import { FaultyStore, MemoryStore } from '@bucketpipe/store-testkit';
import { afterEach, describe, expect, it } from 'vitest';
import { createManifest, MANIFEST_KEY, readManifest } from '../protocol/manifest.js';
import { CountingStore } from '../store/counting-store.js';
import { ManifestWriter } from './manifest-writer.js';
import { sendingManifest } from './pipeline-test-kit.js';

const INTERVAL_MS = 200;

async function startedWriter(heartbeatMs = 60_000) {
  const store = new CountingStore(new MemoryStore());
  const manifest = sendingManifest();
  const etag = await createManifest(store, manifest);
  const errors: unknown[] = [];
  const writer = new ManifestWriter(
    store,
    { manifest, etag },
    { intervalMs: INTERVAL_MS, heartbeatMs, onError: (error) => errors.push(error) },
  );
  writer.start();
  const writes = () => store.counts.put - 1;
  const watermark = async () => (await readManifest(store))?.manifest.watermark;
  return { store, writer, writes, watermark, errors };
}

let running: ManifestWriter | undefined;
afterEach(() => running?.stop());

describe('ManifestWriter', () => {
  it('writes progress at once when the interval since the last write has passed', async () => {
    const { writer, writes, watermark, errors } = await startedWriter();
    running = writer;
    await sleep(INTERVAL_MS * 1.5); // quiet: nothing to write
    expect(writes()).toBe(0);
    writer.set({ watermark: 1 });
    await sleep(30);
    expect(writes()).toBe(1);
    expect(await watermark()).toBe(1);
    expect(errors).toEqual([]);
  });

  it('writes at most once per interval while progress keeps coming, and the last progress is written', async () => {
    const { writer, writes, watermark, errors } = await startedWriter();
    running = writer;
    const started = Date.now();
    for (let chunk = 1; chunk <= 50; chunk++) {
      writer.set({ watermark: chunk });
      await sleep(20);
    }
    const elapsed = Date.now() - started;
    expect(writes()).toBeLessThanOrEqual(Math.floor(elapsed / INTERVAL_MS) + 1);
    expect(writes()).toBeGreaterThanOrEqual(Math.floor(elapsed / INTERVAL_MS) - 1);
    await sleep(INTERVAL_MS * 1.5);
    expect(await watermark()).toBe(50);
    expect(errors).toEqual([]);
  });

  it('refreshes the heartbeat when idle, and finish() writes the final state at once', async () => {
    const { store, writer, writes, errors } = await startedWriter(INTERVAL_MS);
    running = writer;
    await sleep(INTERVAL_MS * 3.5);
    expect(writes()).toBeGreaterThanOrEqual(2);
    expect(writes()).toBeLessThanOrEqual(3);
    const before = writes();
    await writer.finish({
      state: 'complete',
      watermark: 0,
      rawBytes: 0,
      final: { chunks: 0, rawBytes: 0, digest: 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855' },
    });
    expect(writes()).toBe(before + 1);
    expect((await readManifest(store))?.manifest.state).toBe('complete');
    await sleep(INTERVAL_MS * 2);
    expect(writes()).toBe(before + 1);
    expect(errors).toEqual([]);
    expect(await store.get(MANIFEST_KEY)).not.toBeNull();
  });

  it('reports a failed write once and writes no more until finish()', async () => {
    const store = new FaultyStore(new MemoryStore());
    const manifest = sendingManifest();
    const etag = await createManifest(store, manifest);
    store.inject({ op: 'put', key: MANIFEST_KEY, fail: 'precondition', times: 1, nth: 1 });
    const errors: unknown[] = [];
    const writer = new ManifestWriter(store, { manifest, etag }, { intervalMs: 5, heartbeatMs: 5, onError: (error) => errors.push(error) });
    running = writer;
    writer.start();
    writer.set({ watermark: 1 });
    await sleep(100);
    expect(errors).toHaveLength(1);
    expect(store.count('put', MANIFEST_KEY)).toBe(2); // the create and the failed write
  });
});
