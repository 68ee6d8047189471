/** Where a series keeps its objects, relative to the series URL (docs/FORMAT.md §8). */
export const SERIES_KEY = 'series.json';
export const CUTOVER_KEY = 'cutover.json';
export const SERIES_RECEIVERS_PREFIX = 'receivers/';
export const STREAM_RECORD_KEY = 'replication.json';

const SEQ_DIGITS = 12;

/** The prefix of stream `seq` under the series root: `streams/000000000007/` (lexical order = numeric order). */
export function streamPrefix(seq: number): string {
  if (!Number.isSafeInteger(seq) || seq < 0 || seq >= 10 ** SEQ_DIGITS) throw new RangeError(`not a stream sequence number: ${seq}`);
  return `streams/${String(seq).padStart(SEQ_DIGITS, '0')}/`;
}

export function seriesReceiverKey(receiverId: string): string {
  return `${SERIES_RECEIVERS_PREFIX}${receiverId}.json`;
}
