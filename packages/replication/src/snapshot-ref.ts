import { isCount, isNonEmptyString } from './json-record.js';

/**
 * A ZFS snapshot as the series records it: enough to recognise it on either side. The GUID is
 * what `zfs recv` preserves, so it identifies the same snapshot on the source and the target;
 * names and creation times are for people.
 */
export interface SnapshotRef {
  /** The part after '@'. */
  name: string;
  /** 64-bit decimal, as `zfs list -p` prints it. */
  guid: string;
  /** Unix seconds. */
  creation: number;
}

export function isSnapshotRef(v: unknown): v is SnapshotRef {
  if (typeof v !== 'object' || v === null) return false;
  const r = v as Record<string, unknown>;
  return isNonEmptyString(r.name) && typeof r.guid === 'string' && /^\d{1,20}$/.test(r.guid) && isCount(r.creation);
}

export function snapshotRef(snapshot: SnapshotRef): SnapshotRef {
  return { name: snapshot.name, guid: snapshot.guid, creation: snapshot.creation };
}
