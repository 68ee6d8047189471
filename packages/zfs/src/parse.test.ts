import { describe, expect, it } from 'vitest';
import { parseNames, parseSnapshotProperties } from './parse.js';

// As zfs-fuse 0.7 printed it here (zfs get -Hp -o name,property,value guid,createtxg,creation,userrefs …).
const output = [
  'tank/pg@bp-20261204T194144Z\tguid\t16478633664031698526',
  'tank/pg@bp-20261204T194144Z\tcreatetxg\t27',
  'tank/pg@bp-20261204T194144Z\tcreation\t1796413304',
  'tank/pg@bp-20261204T194144Z\tuserrefs\t1',
  'tank/pg@manual\tguid\t1585787169928839183',
  'tank/pg@manual\tcreatetxg\t12',
  'tank/pg@manual\tcreation\t1796413249',
  'tank/pg@manual\tuserrefs\t-',
  '',
].join('\n');

describe('parseSnapshotProperties', () => {
  it('reads every snapshot in the order asked, GUIDs as exact decimal strings', () => {
    const snapshots = parseSnapshotProperties(output, ['tank/pg@manual', 'tank/pg@bp-20261204T194144Z']);
    expect(snapshots).toEqual([
      {
        name: 'tank/pg@manual',
        dataset: 'tank/pg',
        snapshot: 'manual',
        guid: '1585787169928839183',
        createtxg: 12n,
        creation: 1796413249,
        userrefs: 0,
      },
      {
        name: 'tank/pg@bp-20261204T194144Z',
        dataset: 'tank/pg',
        snapshot: 'bp-20261204T194144Z',
        guid: '16478633664031698526', // above 2^53: a JS number would round it
        createtxg: 27n,
        creation: 1796413304,
        userrefs: 1,
      },
    ]);
  });

  it('refuses output that lacks a snapshot or a property', () => {
    expect(() => parseSnapshotProperties(output, ['tank/pg@gone'])).toThrow(/did not give guid, createtxg and creation of tank\/pg@gone/);
    const noTxg = output.replace('tank/pg@manual\tcreatetxg\t12\n', '');
    expect(() => parseSnapshotProperties(noTxg, ['tank/pg@manual'])).toThrow(/tank\/pg@manual/);
    expect(() => parseSnapshotProperties('tank/pg@x guid 1\n', ['tank/pg@x'])).toThrow(/unexpected zfs get line/);
  });
});

describe('parseNames', () => {
  it('drops empty lines', () => {
    expect(parseNames('a@1\na@2\n\n')).toEqual(['a@1', 'a@2']);
  });
});
