/** A snapshot as bucketpipe needs it, read from `zfs get -Hp`. */
export interface Snapshot {
  /** `tank/pgdata@bp-20261204T193501Z` */
  name: string;
  /** `tank/pgdata` */
  dataset: string;
  /** The part after '@'. */
  snapshot: string;
  /** 64-bit decimal: never a JS number, which would round it. */
  guid: string;
  createtxg: bigint;
  /** Unix seconds. */
  creation: number;
  /** How many holds it has (`zfs holds` does not work everywhere: zfs-fuse lacks its helper). */
  userrefs: number;
}

/** The properties listSnapshots reads, in `zfs get` order. */
export const SNAPSHOT_PROPERTIES = ['guid', 'createtxg', 'creation', 'userrefs'] as const;

/**
 * Parses `zfs get -Hp -o name,property,value guid,createtxg,creation,userrefs <snapshots>`: one
 * line per snapshot and property, tab-separated. Returns the snapshots in the order of `names`;
 * throws when one is missing a property (zfs changed its output, or a name was destroyed meanwhile).
 */
export function parseSnapshotProperties(output: string, names: readonly string[]): Snapshot[] {
  const byName = new Map<string, Record<string, string>>();
  for (const line of output.split('\n')) {
    if (line.trim() === '') continue;
    const [name, property, value] = line.split('\t');
    if (name === undefined || property === undefined || value === undefined)
      throw new Error(`unexpected zfs get line: ${JSON.stringify(line)}`);
    const record = byName.get(name) ?? {};
    record[property] = value;
    byName.set(name, record);
  }
  return names.map((name) => {
    const p = byName.get(name);
    const at = name.indexOf('@');
    if (!p || at < 1 || !/^\d+$/.test(p.guid ?? '') || !/^\d+$/.test(p.createtxg ?? '') || !/^\d+$/.test(p.creation ?? '')) {
      throw new Error(`zfs get did not give guid, createtxg and creation of ${name}: ${JSON.stringify(p ?? null)}`);
    }
    return {
      name,
      dataset: name.slice(0, at),
      snapshot: name.slice(at + 1),
      guid: p.guid as string,
      createtxg: BigInt(p.createtxg as string),
      creation: Number(p.creation),
      // '-' where the pool has no user holds at all
      userrefs: /^\d+$/.test(p.userrefs ?? '') ? Number(p.userrefs) : 0,
    };
  });
}

/** The lines of `zfs list -H -o name`, empty ones dropped. */
export function parseNames(output: string): string[] {
  return output.split('\n').filter((line) => line.trim() !== '');
}
