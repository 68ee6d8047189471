import { readdirSync, readlinkSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { type ChunkReader, isChunkReader } from '@bucketpipe/core';
import { describe, expect, it } from 'vitest';
import { type ByteSource, commandSource } from './source.js';

const quiet = () => {};

function readerOf(source: ByteSource): ChunkReader {
  if (!isChunkReader(source.bytes)) throw new Error('the command was not read with read(2)');
  return source.bytes;
}

async function readAll(reader: ChunkReader): Promise<Buffer> {
  const parts: Buffer[] = [];
  for (;;) {
    const target = Buffer.alloc(64 * 1024);
    const got = await reader.fill(target, target.length);
    parts.push(target.subarray(0, got));
    if (got < target.length) return Buffer.concat(parts);
  }
}

/** This process's descriptors of a source command's pipe (opened from its private, removed directory). */
function openSourcePipes(): string[] {
  return readdirSync('/proc/self/fd')
    .map((fd) => {
      try {
        return readlinkSync(`/proc/self/fd/${fd}`);
      } catch {
        return '';
      }
    })
    .filter((target) => target.includes('bucketpipe-source-'));
}

async function waitUntil(condition: () => boolean): Promise<void> {
  for (let waited = 0; !condition(); waited += 10) {
    if (waited > 10_000) throw new Error('timed out');
    await sleep(10);
  }
}

describe('commandSource', () => {
  it("reads the command's stdout through a pipe, whole, even when the command exited before the first read (its output fits in the pipe)", async () => {
    const source = await commandSource(['sh', '-c', 'printf "one\\ntwo\\n"; head -c 50000 /dev/zero'], quiet);
    await source.exit;
    const reader = readerOf(source);
    const bytes = await readAll(reader);
    expect(bytes.subarray(0, 8).toString()).toBe('one\ntwo\n');
    expect(bytes.length).toBe(8 + 50_000);
    await reader.close();
    await waitUntil(() => openSourcePipes().length === 0);
  });

  it('gives the command a write-only end: it gets SIGPIPE once send stops reading, instead of blocking forever', async () => {
    const source = await commandSource(['yes'], quiet);
    const reader = readerOf(source);
    const target = Buffer.alloc(1024 * 1024);
    expect(await reader.fill(target, target.length)).toBe(target.length);
    await reader.close();
    await expect(source.exit).rejects.toMatchObject({ code: 'BP_SOURCE_FAILED', message: expect.stringContaining('SIGPIPE') });
    expect(openSourcePipes()).toEqual([]);
  });

  it('closes its end only after a read blocked on a silent command returns: stop() ends the command, then the pipe goes', async () => {
    const source = await commandSource(['sleep', '30'], quiet);
    const reader = readerOf(source);
    const aborted = new AbortController();
    const filling = reader.fill(Buffer.alloc(1024), 1024, aborted.signal);
    aborted.abort(new Error('send stopped'));
    await expect(filling).rejects.toThrow('send stopped');
    await reader.close();
    expect(openSourcePipes()).toHaveLength(1); // the read is still blocked in the thread pool
    source.stop();
    await expect(source.exit).rejects.toMatchObject({ code: 'BP_SOURCE_FAILED' });
    await waitUntil(() => openSourcePipes().length === 0);
  });

  it('names a command that cannot start and leaves no pipe open', async () => {
    await expect(commandSource(['bucketpipe-no-such-command'], quiet)).rejects.toMatchObject({
      code: 'BP_SOURCE_START',
      message: 'cannot run source command "bucketpipe-no-such-command": command not found; check the command and PATH',
    });
    await waitUntil(() => openSourcePipes().length === 0);
  });
});
