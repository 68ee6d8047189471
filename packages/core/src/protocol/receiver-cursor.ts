import type { ObjectStore } from '../store/store.js';
import { isRecord } from './json.js';

export const RECEIVERS_PREFIX = 'receivers/';
export type ReceiverState = 'waiting' | 'receiving' | 'done' | 'failed';

/** What a receiver publishes at receivers/<id>.json so that `inspect` can show its position. */
export interface ReceiverCursor {
  format: 'bucketpipe.receiver';
  version: 1;
  receiverId: string;
  streamId: string | null;
  host: string;
  pid: number;
  startedAt: string;
  updatedAt: string;
  /** Chunks written to the sink: the next one it needs is this index. */
  position: number;
  rawBytes: number;
  state: ReceiverState;
  error?: string;
}

export function receiverKey(receiverId: string): string {
  return `${RECEIVERS_PREFIX}${receiverId}.json`;
}

export async function listReceiverCursors(store: ObjectStore): Promise<ReceiverCursor[]> {
  const cursors: ReceiverCursor[] = [];
  for await (const { key } of store.list(RECEIVERS_PREFIX)) {
    if (!key.endsWith('.json')) continue;
    const object = await store.get(key);
    if (!object) continue;
    try {
      const value: unknown = JSON.parse(Buffer.from(object.body).toString('utf8'));
      if (isRecord(value) && value.format === 'bucketpipe.receiver') cursors.push(value as unknown as ReceiverCursor);
    } catch {
      // A damaged cursor only affects what inspect shows, never the data path.
    }
  }
  return cursors;
}
