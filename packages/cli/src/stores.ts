import { CountingStore, openStore, type StoreOpenOptions } from '@bucketpipe/core';
import { registerFsStore } from '@bucketpipe/store-fs';

let registered = false;

/** Opens the store for a stream URL, counting its requests (for the summary line); store packages are registered on first use. */
export async function openStreamStore(url: string, options: StoreOpenOptions = {}): Promise<CountingStore> {
  if (!registered) {
    registerFsStore();
    registered = true;
  }
  return new CountingStore(await openStore(url, options));
}
