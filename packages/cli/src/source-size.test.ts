import { chmod, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Log } from './log/index.js';
import { estimateSourceSize, parseZfsSendSize, zfsSendDryRun } from './source-size.js';

describe('zfsSendDryRun', () => {
  it('is "zfs send -nP" with the same arguments, for a zfs send source only', () => {
    expect(zfsSendDryRun(['zfs', 'send', '-c', 'tank/pg@m'])).toEqual(['zfs', 'send', '-nP', '-c', 'tank/pg@m']);
    expect(zfsSendDryRun(['/usr/sbin/zfs', 'send', '-i', '@a', 'tank/pg@b'])).toEqual([
      '/usr/sbin/zfs',
      'send',
      '-nP',
      '-i',
      '@a',
      'tank/pg@b',
    ]);
    for (const other of [['zfs', 'recv', 'x'], ['zfs'], ['zfsx', 'send', 'x'], ['cat', 'zfs', 'send'], ['sudo', 'zfs', 'send', 'x'], []]) {
      expect(zfsSendDryRun(other)).toBeNull();
    }
  });
});

describe('parseZfsSendSize', () => {
  it("reads the size line of OpenZFS's parsable dry run", () => {
    expect(parseZfsSendSize('full\ttank/pg@migrate\t1288490188\nsize\t1288490188\n')).toBe(1288490188);
    expect(parseZfsSendSize('incremental\t@a\ttank/pg@b\t4096\r\nsize\t4096\r\n')).toBe(4096);
    // -v adds human lines; -R one line per dataset and one total at the end.
    const replicated = 'full\ttank@s\t100\nfull\ttank/a@s\t200\ntotal estimated size is 300\nsize\t300\n';
    expect(parseZfsSendSize(replicated)).toBe(300);
    expect(parseZfsSendSize('size 777')).toBe(777);
  });

  it('gives null for anything else', () => {
    for (const output of [
      '',
      "invalid option 'n'\nusage:\n\tsend [-RDp] [-[iI] snapshot] <snapshot>\n",
      'size\t\n',
      'size\tabc\n',
      'size\t-5\n',
      'size\t0\n',
      'size\t1.5G\n',
      `size\t${2 ** 53}\n`,
      'filesize\t100\n',
      'size\t100\textra\n',
      '\u0000\u00ff garbage \u001b[31m',
    ]) {
      expect(parseZfsSendSize(output), JSON.stringify(output)).toBeNull();
    }
    expect(parseZfsSendSize('size\t100\nsize\tjunk\n')).toBeNull(); // the last size line counts
  });
});

describe('estimateSourceSize', () => {
  let dir: string;
  const said: Array<{ text: string; fields?: Record<string, unknown> }> = [];
  const log: Log = {
    format: 'json',
    live: false,
    info: (_event, text, fields) => void said.push({ text, fields }),
    warn: () => {},
    commandOutput: () => {},
    failure: () => {},
    bug: () => {},
    status: () => {},
  };

  /** A fake `zfs` (its name is what makes it a zfs send source), acting out `script` for `zfs send -nP`. */
  async function fakeZfs(name: string, script: string): Promise<string> {
    const path = join(dir, name, 'zfs');
    await mkdir(join(dir, name));
    await writeFile(path, `#!/bin/sh\n${script}\n`);
    await chmod(path, 0o755);
    return path;
  }

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'bucketpipe-size-'));
  });
  afterAll(() => rm(dir, { recursive: true, force: true }));

  it('asks the dry run, with the same arguments, and says what it estimates', async () => {
    said.length = 0;
    const zfs = await fakeZfs(
      'openzfs',
      `[ "$1 $2 $3 $4" = "send -nP -c tank/pg@m" ] || exit 9\nprintf 'full\\ttank/pg@m\\t5000\\nsize\\t5000\\n'`,
    );
    expect(await estimateSourceSize([zfs, 'send', '-c', 'tank/pg@m'], log)).toBe(5000);
    expect(said).toEqual([
      {
        text: `"${zfs} send -nP -c tank/pg@m" estimates the stream at 4.88 KiB (5000 bytes)`,
        fields: { expectedRawBytes: 5000, estimatedBy: 'zfs send -nP' },
      },
    ]);
  });

  it('goes on without a size, said once, when the zfs has no dry run (zfs-fuse), prints garbage, or fails to start', async () => {
    said.length = 0;
    const fuse = await fakeZfs('fuse', `echo "invalid option 'n'" >&2\necho "usage:" >&2\nexit 2`);
    expect(await estimateSourceSize([fuse, 'send', 'tank/pg@m'], log)).toBeUndefined();
    const garbage = await fakeZfs('garbage', `printf 'size\\tlots\\n\\001\\002'`);
    expect(await estimateSourceSize([garbage, 'send', 'tank/pg@m'], log)).toBeUndefined();
    expect(await estimateSourceSize([join(dir, 'missing', 'zfs'), 'send', 'tank/pg@m'], log)).toBeUndefined();
    expect(said.map((s) => s.text)).toEqual([
      `no size estimate from "${fuse} send -nP tank/pg@m" (it exited with code 2: invalid option 'n'): no percent or ETA; send --size SIZE gives one`,
      `no size estimate from "${garbage} send -nP tank/pg@m" (its output has no "size" line): no percent or ETA; send --size SIZE gives one`,
      `no size estimate from "${join(dir, 'missing', 'zfs')} send -nP tank/pg@m" (command not found): no percent or ETA; send --size SIZE gives one`,
    ]);
    expect(said.every((s) => s.fields?.estimatedBy === null)).toBe(true);
  });

  it('gives up on a dry run that does not answer in time', async () => {
    said.length = 0;
    const hung = await fakeZfs('hung', 'exec sleep 5');
    const started = performance.now();
    expect(await estimateSourceSize([hung, 'send', 'x'], log, 300)).toBeUndefined();
    expect(performance.now() - started).toBeLessThan(2000);
    expect(said.map((s) => s.text)).toEqual([
      `no size estimate from "${hung} send -nP x" (no answer within 0.3s): no percent or ETA; send --size SIZE gives one`,
    ]);
  });

  it('does nothing for another source', async () => {
    said.length = 0;
    expect(await estimateSourceSize(['cat', 'file'], log)).toBeUndefined();
    expect(await estimateSourceSize([], log)).toBeUndefined();
    expect(said).toEqual([]);
  });
});
