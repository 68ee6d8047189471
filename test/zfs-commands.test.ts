// The @bucketpipe/zfs commands against real ZFS (zfs-fuse, pool version 23): snapshots listed with
// exact GUIDs and in txg order, holds counted in userrefs, what zfs-fuse cannot tell.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Zfs, ZfsError } from '../packages/zfs/dist/index.js';
import { type Pool, startZfs, type ZfsTestEnv } from './servers/zfs.js';

describe('@bucketpipe/zfs on zfs-fuse', () => {
  let env: ZfsTestEnv;
  let pool: Pool;
  let zfs: Zfs;

  beforeAll(async () => {
    env = await startZfs();
    pool = await env.createPool('cmd');
    zfs = new Zfs({ command: env.zfsPath });
  });
  afterAll(async () => {
    await env?.stop();
  });

  it('lists a dataset’s own snapshots oldest first, with the GUIDs zfs prints, and null for no dataset', async () => {
    const ds = `${pool.name}/list`;
    await env.zfs('create', ds);
    await env.zfs('create', `${ds}/child`);
    expect(await zfs.listSnapshots(ds)).toEqual([]);
    const b = await zfs.snapshot(ds, 'b');
    const a = await zfs.snapshot(ds, 'a');
    await env.zfs('snapshot', `${ds}/child@c`);
    const listed = await zfs.listSnapshots(ds);
    expect(listed?.map((s) => s.snapshot)).toEqual(['b', 'a']); // by txg, not by name; no child's
    expect(listed?.[0]).toEqual(b);
    expect(b.createtxg < a.createtxg).toBe(true);
    expect(b.guid).toBe((await env.zfs('get', '-Hp', '-o', 'value', 'guid', `${ds}@b`)).trim());
    expect(await zfs.listSnapshots(`${pool.name}/none`)).toBeNull();
    expect(await zfs.datasetExists(ds)).toBe(true);
    expect(await zfs.datasetExists(`${pool.name}/none`)).toBe(false);
    await expect(zfs.snapshot(ds, 'a')).rejects.toMatchObject({ code: 'BP_ZFS_SNAPSHOT_EXISTS' });
  });

  it('holds and releases idempotently; a held snapshot cannot be destroyed', async () => {
    const ds = `${pool.name}/hold`;
    await env.zfs('create', ds);
    const s = await zfs.snapshot(ds, 's');
    await zfs.hold('bucketpipe-test', [s.name]);
    await zfs.hold('bucketpipe-test', [s.name]);
    expect((await zfs.listSnapshots(ds))?.[0]?.userrefs).toBe(1);
    const refused = await zfs.destroySnapshot(s.name).catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(ZfsError);
    expect((refused as Error).message).toMatch(/^zfs destroy .*@s failed: /);
    await zfs.release('bucketpipe-test', [s.name]);
    await zfs.release('bucketpipe-test', [s.name]);
    expect((await zfs.listSnapshots(ds))?.[0]?.userrefs).toBe(0);
    await zfs.destroySnapshot(s.name);
    expect(await zfs.listSnapshots(ds)).toEqual([]);
  });

  it('says it cannot tell what was written, and finds no partial receive, where the pool lacks both', async () => {
    const ds = `${pool.name}/old`;
    await env.zfs('create', ds);
    expect(await zfs.writtenSinceNewestSnapshot(ds)).toBeUndefined();
    expect(await zfs.abortPartialReceive(ds)).toBe(false);
    expect(await zfs.sendArgv(['-c'], `${ds}@b`, `${ds}@a`)).toEqual([env.zfsPath, 'send', '-c', '-i', `${ds}@a`, `${ds}@b`]);
    expect(await zfs.recvArgv(['-F'], ds)).toEqual([env.zfsPath, 'recv', '-F', ds]);
  });
});
