import { setTimeout as sleep } from 'node:timers/promises';
import { FaultyStore, MemoryStore, pieces, randomBytes } from '@bucketpipe/store-testkit';
import { describe, expect, it, vi } from 'vitest';
import { parseChunkKey } from '../protocol/chunk.js';
import { type ReceiverCursor, receiverKey } from '../protocol/receiver-cursor.js';
import type { ObjectStore } from '../store/store.js';
import { LagGate, type LagLimit, type LagWait } from './lag-gate.js';
import { background, CHUNK, digestOf, pipelineTestKit } from './pipeline-test-kit.js';
import { send } from './sender.js';

// The testkit is built against the package (dist) of @bucketpipe/core; point that at these sources.
vi.mock('@bucketpipe/core', () => import('../index.js'));

const { sendOptions } = pipelineTestKit();
const STREAM = '0f8e2b7a-3c4d-4e5f-8a9b-1c2d3e4f5a6b';
const OTHER = '11111111-2222-4333-8444-555555555555';

async function publish(store: ObjectStore, receiverId: string, patch: Partial<ReceiverCursor> = {}): Promise<void> {
  const now = new Date().toISOString();
  const cursor: ReceiverCursor = {
    format: 'bucketpipe.receiver',
    version: 1,
    receiverId,
    streamId: STREAM,
    host: 'test',
    pid: 1,
    startedAt: now,
    updatedAt: now,
    position: 0,
    rawBytes: 0,
    state: 'receiving',
    ...patch,
  };
  await store.put(receiverKey(receiverId), Buffer.from(JSON.stringify(cursor)));
}

/** A gate with test-sized intervals, and what it reported. */
function gate(store: ObjectStore, limit: Partial<LagLimit> = {}, streamId = STREAM) {
  const waits: Array<LagWait | null> = [];
  const warnings: string[] = [];
  const g = new LagGate(store, streamId, {
    maxLag: 4,
    pollIntervalMs: 5,
    staleAfterMs: 10_000,
    firstReceiverWaitMs: 10_000,
    onWait: (w) => waits.push(w),
    onWarning: (m) => warnings.push(m),
    ...limit,
  });
  return { gate: g, waits, warnings };
}

/** Whether `promise` is still pending after `ms`. */
async function pendingAfter(promise: Promise<unknown>, ms: number): Promise<boolean> {
  const marker = Symbol('pending');
  return (await Promise.race([promise.then(() => 'settled'), sleep(ms).then(() => marker)])) === marker;
}

describe('LagGate', () => {
  it('admits chunks below position + maxLag at once, holds the next one until the slowest receiver moves', async () => {
    const store = new MemoryStore();
    await publish(store, 'fast', { position: 10 });
    await publish(store, 'slow', { position: 2 });
    const { gate: g, waits } = gate(store);
    for (let next = 0; next < 6; next++) await g.admit(next); // 6 − 2 < 4
    const held = background(g.admit(6));
    expect(await pendingAfter(held, 50)).toBe(true);
    expect(waits.at(-1)).toEqual({ receiverId: 'slow', position: 2, next: 6, behind: 4 });
    await publish(store, 'slow', { position: 3 });
    await held;
    expect(waits.at(-1)).toBeNull();
    expect(g.slowest).toEqual({ receiverId: 'slow', position: 3 });
  });

  it('ignores cursors of another stream, and receivers that are done or failed', async () => {
    const store = new MemoryStore();
    await publish(store, 'other-stream', { streamId: OTHER, position: 0 });
    await publish(store, 'finished', { state: 'done', position: 0 });
    await publish(store, 'broken', { state: 'failed', position: 0 });
    await publish(store, 'live', { position: 20 });
    const { gate: g } = gate(store);
    for (let next = 0; next < 24; next++) await g.admit(next);
    expect(await pendingAfter(background(g.admit(24)), 30)).toBe(true);
  });

  it('reads the cursors only when near the limit, at most once per poll interval', async () => {
    const memory = new MemoryStore();
    const store = new FaultyStore(memory);
    await publish(memory, 'r', { position: 100 });
    const { gate: g } = gate(store, { pollIntervalMs: 50 });
    for (let next = 0; next < 104; next++) await g.admit(next);
    expect(store.count('list')).toBe(1); // the first admit
    const held = background(g.admit(104));
    await sleep(230);
    expect(store.count('list')).toBeGreaterThanOrEqual(4);
    expect(store.count('list')).toBeLessThanOrEqual(6);
    await publish(memory, 'r', { position: 101 });
    await held;
  });

  it('with no receiver, holds at maxLag for firstReceiverWaitMs, then goes on with a warning, and holds again for a receiver that registers', async () => {
    const store = new MemoryStore();
    const { gate: g, waits, warnings } = gate(store, { firstReceiverWaitMs: 150 });
    for (let next = 0; next < 4; next++) await g.admit(next);
    const started = Date.now();
    await g.admit(4);
    expect(Date.now() - started).toBeGreaterThanOrEqual(140);
    expect(waits[0]).toEqual({ receiverId: null, position: 0, next: 4, behind: 4 });
    expect(warnings).toEqual([expect.stringContaining('no receiver of this stream has registered within 0.15s')]);
    for (let next = 5; next < 40; next++) await g.admit(next);
    await publish(store, 'late', { position: 30 });
    await sleep(10); // past the poll interval: the next admit reads the cursors
    await g.admit(33);
    expect(await pendingAfter(background(g.admit(34)), 30)).toBe(true);
  });

  it('holds for a receiver that registers within firstReceiverWaitMs, and not at all with 0', async () => {
    const store = new MemoryStore();
    const { gate: g } = gate(store);
    const held = background(g.admit(4));
    expect(await pendingAfter(held, 30)).toBe(true);
    await publish(store, 'r', { position: 1 });
    await held;
    const { gate: open } = gate(new MemoryStore(), { firstReceiverWaitMs: 0 });
    for (let next = 0; next < 100; next++) await open.admit(next);
  });

  it('ignores a receiver that holds it back without moving for staleAfterMs, with a warning, until it moves again', async () => {
    const store = new MemoryStore();
    await publish(store, 'dead', { position: 0 });
    await publish(store, 'alive', { position: 6 });
    const { gate: g, warnings, waits } = gate(store, { staleAfterMs: 100 });
    const started = Date.now();
    await g.admit(4); // held by "dead" until it is stale, then by "alive" (6): 4 − 6 < 4
    expect(Date.now() - started).toBeGreaterThanOrEqual(95);
    expect(warnings).toEqual([expect.stringMatching(/receiver dead \(chunk 0\) has not moved for 0\.1s/)]);
    expect(waits).toContainEqual({ receiverId: 'dead', position: 0, next: 4, behind: 4 });
    for (let next = 5; next < 10; next++) await g.admit(next);
    // It comes back: counted again at once.
    await publish(store, 'dead', { position: 1 });
    const held = background(g.admit(10));
    expect(await pendingAfter(held, 40)).toBe(true);
    expect(warnings.at(-1)).toMatch(/receiver dead moves again \(chunk 1\)/);
    await publish(store, 'dead', { position: 7 });
    await held;
  });

  it('does not count the time a receiver idled while it did not hold the sender back', async () => {
    const store = new MemoryStore();
    await publish(store, 'idle', { position: 10 });
    const { gate: g, warnings } = gate(store, { staleAfterMs: 100 });
    await g.admit(0);
    await sleep(150); // the receiver's cursor does not change: it has nothing to do
    for (let next = 1; next < 14; next++) await g.admit(next);
    expect(await pendingAfter(background(g.admit(14)), 60)).toBe(true);
    expect(warnings).toEqual([]);
  });

  it('rejects with the abort reason while it holds', async () => {
    const store = new MemoryStore();
    await publish(store, 'r', { position: 0 });
    const { gate: g } = gate(store);
    const controller = new AbortController();
    const held = background(g.admit(4, controller.signal));
    await sleep(20);
    const reason = new Error('interrupted');
    controller.abort(reason);
    await expect(held).rejects.toBe(reason);
  });

  it('refuses a maxLag below 1', () => {
    expect(() => new LagGate(new MemoryStore(), STREAM, { maxLag: 0 })).toThrow(RangeError);
  });
});

describe('send with a lag limit', () => {
  it('never has a chunk object at or beyond the slowest receiver position + maxLag, and still completes', async () => {
    const maxLag = 3;
    const data = randomBytes(40 * CHUNK + 99, 11);
    const memory = new MemoryStore();
    const store = new FaultyStore(memory);
    let position = 0;
    let streamId = '';
    let worst = 0;
    store.inject({
      op: 'put',
      key: /^chunks\//,
      before: (request) => {
        const index = parseChunkKey(request.key) ?? -1;
        worst = Math.max(worst, index - position + 1);
        expect(index, `chunk ${index} uploaded while the receiver is at ${position}`).toBeLessThan(position + maxLag);
      },
    });
    // A slow receiver: its cursor moves one chunk per 10 ms, never past what the manifest counts.
    let stop = false;
    const receiver = (async () => {
      while (!stop) {
        const manifest = memory.peek('manifest.json');
        if (manifest) {
          const m = JSON.parse(Buffer.from(manifest).toString('utf8')) as { streamId: string; watermark: number };
          streamId = m.streamId;
          if (position < m.watermark) position++;
          await publish(memory, 'slow', { streamId, position });
        }
        await sleep(10);
      }
    })();
    const waits: Array<LagWait | null> = [];
    const sent = await send(
      sendOptions(store, pieces(data, 10_007), { lag: { maxLag, pollIntervalMs: 5, onWait: (w) => waits.push(w) } }),
    ).finally(() => {
      stop = true;
    });
    await receiver;
    expect(sent.chunks).toBe(41);
    expect(sent.digest).toBe(digestOf(data));
    expect(worst).toBe(maxLag); // the window was used, and never exceeded
    expect(waits.some((w) => w?.receiverId === 'slow' && w.behind === maxLag)).toBe(true);
  });
});
