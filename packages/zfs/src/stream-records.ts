/**
 * The records of a ZFS send stream that tell where it begins and ends (OpenZFS
 * include/sys/zfs_ioctl.h, the same since pool version 1): every record header is a
 * dmu_replay_record_t of 312 bytes, in the sending host's byte order —
 *   u32 drr_type, u32 drr_payloadlen, then the union:
 *   BEGIN (type 0): u64 drr_magic = 0x2F5BACBAC, u64 drr_versioninfo, u64 drr_creation_time,
 *                   u32 drr_type, u32 drr_flags, u64 drr_toguid @40, u64 drr_fromguid, char drr_toname[256] @56
 *   END (type 5):   zio_cksum_t drr_checksum (32 bytes) @8, u64 drr_toguid @40
 * A compound stream (`zfs send -R`, header type 2 in drr_versioninfo's low bits) is a BEGIN with an
 * nvlist payload and its END, then one full stream per snapshot, then a final END.
 */
export const RECORD_BYTES = 312;
const DRR_BEGIN = 0;
const DRR_END = 5;
const MAGIC = 0x2f5bacbacn;
const COMPOUND = 2n;

export interface StreamBegin {
  littleEndian: boolean;
  compound: boolean;
  /** drr_toguid, 64-bit decimal. */
  toGuid: string;
  /** drr_toname: the snapshot the stream carries (`tank/pgdata@bp-…`). */
  toName: string;
}

/** The BEGIN record at the start of `head` (at least 312 bytes), or null when the bytes are not a ZFS send stream. */
export function readBegin(head: Uint8Array): StreamBegin | null {
  if (head.length < RECORD_BYTES) return null;
  const view = new DataView(head.buffer, head.byteOffset, RECORD_BYTES);
  for (const littleEndian of [true, false]) {
    if (view.getUint32(0, littleEndian) !== DRR_BEGIN || view.getBigUint64(8, littleEndian) !== MAGIC) continue;
    const name = Buffer.from(head.buffer, head.byteOffset + 56, 256);
    const end = name.indexOf(0);
    return {
      littleEndian,
      compound: (view.getBigUint64(16, littleEndian) & 3n) === COMPOUND,
      toGuid: view.getBigUint64(40, littleEndian).toString(),
      toName: name.subarray(0, end === -1 ? 256 : end).toString('utf8'),
    };
  }
  return null;
}

/** Whether `record` (312 bytes) is an END record (of the stream `toGuid`, when given). */
export function isEnd(record: Uint8Array, begin: StreamBegin, toGuid?: string): boolean {
  if (record.length !== RECORD_BYTES) return false;
  const view = new DataView(record.buffer, record.byteOffset, RECORD_BYTES);
  if (view.getUint32(0, begin.littleEndian) !== DRR_END || view.getUint32(4, begin.littleEndian) !== 0) return false;
  return toGuid === undefined || view.getBigUint64(40, begin.littleEndian).toString() === toGuid;
}

/**
 * Whether a stream that began with `begin` ends as a whole one: its last record is the END of the
 * snapshot it carries (same drr_toguid) — for a compound stream, the final END right after the END
 * of its last snapshot's stream. `tail` is the stream's last bytes (up to 624).
 */
export function endsWhole(begin: StreamBegin, tail: Uint8Array): boolean {
  const last = tail.subarray(tail.length - RECORD_BYTES);
  if (begin.compound) {
    if (tail.length < 2 * RECORD_BYTES) return false;
    return isEnd(last, begin) && isEnd(tail.subarray(tail.length - 2 * RECORD_BYTES, tail.length - RECORD_BYTES), begin);
  }
  return tail.length >= RECORD_BYTES && isEnd(last, begin, begin.toGuid);
}
