import { describe, expect, it } from 'vitest';
import { parseRecvFlags, parseSendFlags } from './flags.js';
import { datasetName } from './names.js';
import { bucketpipeSnapshotName, isBucketpipeSnapshotName } from './snapshot-name.js';

describe('parseSendFlags', () => {
  it('passes on the flags that shape the stream, split and deduplicated', () => {
    expect(parseSendFlags('')).toEqual([]);
    expect(parseSendFlags(' -c  -L ')).toEqual(['-c', '-L']);
    expect(parseSendFlags('-cL -w --compressed')).toEqual(['-c', '-L', '-w']);
  });

  it('refuses what would change what is sent, naming the flag and why', () => {
    expect(() => parseSendFlags('-c -i @a')).toThrow(/--send-flags: -i is not allowed: the daemon sends each increment/);
    expect(() => parseSendFlags('-R')).toThrow(/-R is not allowed: a series replicates one dataset/);
    expect(() => parseSendFlags('-nv')).toThrow(/-n is not allowed/);
    expect(() => parseSendFlags('tank/x@y')).toThrow(/tank\/x@y is not a zfs send flag bucketpipe passes on \(allowed: -c -L -w/);
  });
});

describe('parseRecvFlags', () => {
  it('passes on -F, -u, -s and properties with their values', () => {
    expect(parseRecvFlags('-F -u')).toEqual(['-F', '-u']);
    expect(parseRecvFlags('-Fu -o canmount=off -x mountpoint -s')).toEqual(['-F', '-u', '-o', 'canmount=off', '-x', 'mountpoint', '-s']);
  });

  it('refuses flags that change the target name or receive nothing', () => {
    expect(() => parseRecvFlags('-d')).toThrow(/-d is not allowed: it changes the target name; give the target with --dataset/);
    expect(() => parseRecvFlags('-n')).toThrow(/-n is not allowed/);
    expect(() => parseRecvFlags('-o')).toThrow(/-o needs a value/);
    expect(() => parseRecvFlags('-o -F')).toThrow(/-o needs a value/);
    expect(() => parseRecvFlags('tank/x')).toThrow(/not a zfs recv flag/);
  });
});

describe('names', () => {
  it('checks dataset names', () => {
    expect(datasetName('tank/pg-data_1.x:y')).toBe('tank/pg-data_1.x:y');
    for (const bad of ['', '/tank', 'tank/', 'tank//pg', 'tank/pg@snap', 'tank/p g', '1tank', 'tank/..']) {
      expect(() => datasetName(bad), bad).toThrow(/is not a dataset name/);
    }
  });

  it('names its own snapshots by UTC time, and recognises only those', () => {
    const name = bucketpipeSnapshotName(new Date('2026-12-04T19:35:01.789Z'));
    expect(name).toBe('bp-20261204T193501Z');
    expect(isBucketpipeSnapshotName(name)).toBe(true);
    for (const other of ['bp-2026', 'manual', 'bp-20261204T193501Z-x', 'xbp-20261204T193501Z'])
      expect(isBucketpipeSnapshotName(other)).toBe(false);
  });
});
