import { mkdir, readdir, readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { errorLine, MiB, mixedInputSuite, readJson, run, summaryOf } from './helpers.js';

const sendArgs = ['--chunk-size', '1MiB', '--manifest-interval', '100ms'];

interface Row {
  url: string;
  path: string;
  state: string;
  chunks: number;
  rawBytes: number;
  storedBytes: number;
  receivers: { count: number; done: number };
}

describe('stream lifecycle: ls lists the streams under a prefix, rm deletes one', () => {
  const suite = mixedInputSuite('lifecycle', 3 * MiB + 777, 3);
  let root: string;

  beforeAll(async () => {
    root = join(suite.dir, 'streams');
  });

  async function ls(): Promise<Row[]> {
    const listed = await run(['ls', root, '--json']);
    expect(listed.code, listed.stderr).toBe(0);
    return (JSON.parse(listed.stdout) as { streams: Row[] }).streams;
  }

  it('lists two sent streams with state and size; rm refuses an unfinished receiver, --force deletes', async () => {
    const first = join(root, 'pg', 'one');
    const second = join(root, 'two');
    await mkdir(join(root, 'pg'), { recursive: true }); // a directory stream's parent must exist
    for (const stream of [first, second]) {
      const sent = await run(['send', stream, ...sendArgs, '--', 'cat', suite.input]);
      expect(sent.code, sent.stderr).toBe(0);
    }
    const received = await run(['receive', second, '--poll-interval', '100ms', '--receiver-id', 'dr', '--', 'sh', '-c', 'cat > /dev/null']);
    expect(received.code, received.stderr).toBe(0);

    const rows = await ls();
    expect(rows.map((r) => r.path)).toEqual(['pg/one', 'two']);
    expect(rows.map((r) => r.url)).toEqual([first, second]);
    const manifest = await readJson(join(first, 'manifest.json'));
    for (const row of rows) {
      expect(row).toMatchObject({ state: 'complete', chunks: 4, rawBytes: 3 * MiB + 777 });
      expect(row.storedBytes).toBe(manifest.storedBytes);
    }
    expect(rows[1]?.receivers).toMatchObject({ count: 1, done: 1 });

    const table = await run(['ls', root]);
    expect(table.code, table.stderr).toBe(0);
    expect(table.stdout).toMatch(/^STREAM +STATE +RAW +STORED +CHUNKS +AGE +RECEIVERS$/m);
    const line = table.stdout.split('\n').find((l) => l.startsWith(`${second} `));
    expect(line).toMatch(/ complete +3\.00 MiB +\d.* \(\d+%, \d+\.\d\dx\) +4 +\d+s +1 \(1 done\)$/);
    expect(table.stdout).toMatch(/2 streams: 6\.00 MiB raw, .* stored — stored is \d+% of raw/);

    // A receiver that is still receiving: its cursor as it publishes it mid-stream.
    const cursorPath = join(first, 'receivers', 'dr-test.json');
    await mkdir(join(first, 'receivers'));
    const cursor = JSON.parse(await readFile(join(second, 'receivers', 'dr.json'), 'utf8')) as Record<string, unknown>;
    await writeFile(
      cursorPath,
      JSON.stringify({ ...cursor, receiverId: 'dr-test', streamId: manifest.streamId, state: 'receiving', position: 2 }),
    );
    const refused = await run(['rm', first]);
    expect(refused.code).toBe(4);
    expect(errorLine(refused.stderr)).toMatch(
      /stream .*pg\/one is in use: receiver dr-test on .* has not finished \(receiving, chunk 2\/4.*--force \[BP_STREAM_IN_USE\]/,
    );
    expect((await readdir(join(first, 'chunks'))).length).toBe(4);

    const forced = await run(['rm', first, '--force']);
    expect(forced.code, forced.stderr).toBe(0);
    expect(forced.stderr).toMatch(/deleted .*pg\/one: 4 chunks, 1 receiver cursor, the manifest — 6 objects/);
    expect(summaryOf(forced.stderr)).toMatchObject({ command: 'rm', objects: 6, chunks: 4, receivers: 1 });
    await expect(stat(join(first, 'manifest.json'))).rejects.toThrow();
    expect(await readdir(join(first, 'chunks'))).toEqual([]);

    expect((await ls()).map((r) => r.path)).toEqual(['two']);
    const again = await run(['rm', first]);
    expect(again.code).toBe(3);
    expect(errorLine(again.stderr)).toMatch(/no stream at .*pg\/one \(no manifest\.json\).*\[BP_STREAM_NOT_FOUND\]/);
  });
});
