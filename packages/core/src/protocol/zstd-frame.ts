import { findFrameCompressedSize, getFrameContentSize } from '../codec/zstd.js';

/** Magic number of a standard zstd frame (RFC 8878 §3.1.1), read as a little-endian u32. */
export const ZSTD_FRAME_MAGIC = 0xfd2fb528;

/**
 * Why `frame` is not the payload docs/FORMAT.md §2.2 requires of a chunk of `rawLength` raw bytes
 * (exactly one standard zstd frame, with a content checksum, its content size equal to the raw
 * length, no dictionary, nothing after it), or null when it is. A zstd decoder alone would accept
 * more: it decodes concatenated frames and skips skippable ones. Cheap: it reads the frame header
 * and walks the block headers, never the blocks.
 */
export function payloadFrameProblem(frame: Uint8Array, rawLength: number): string | null {
  if (frame.length < 6 || new DataView(frame.buffer, frame.byteOffset, 4).getUint32(0, true) !== ZSTD_FRAME_MAGIC) {
    return 'it does not start with a zstd frame';
  }
  const descriptor = frame[4] as number;
  const contentSizeFlag = descriptor >> 6;
  const singleSegment = (descriptor >> 5) & 1;
  if (((descriptor >> 2) & 1) === 0) return 'its zstd frame has no content checksum';
  if ((descriptor & 0b11) !== 0) return 'its zstd frame names a dictionary';
  if (contentSizeFlag === 0 && singleSegment === 0) return 'its zstd frame does not state its content size';
  let contentSize: number | null;
  let frameLength: number;
  try {
    contentSize = getFrameContentSize(frame);
    frameLength = findFrameCompressedSize(frame);
  } catch (error) {
    return `its zstd frame is damaged or truncated (${(error as Error).message})`;
  }
  if (contentSize !== rawLength) return `its zstd frame holds ${contentSize} bytes, the header says ${rawLength}`;
  if (frameLength !== frame.length) {
    return `${frame.length - frameLength} bytes follow its zstd frame (another frame, or a skippable one)`;
  }
  return null;
}
