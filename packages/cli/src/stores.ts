import { type ObjectStore, openStore, type StoreOpenOptions } from '@bucketpipe/core';
import { registerFsStore } from '@bucketpipe/store-fs';

let registered = false;

/** Opens the store for a stream URL; store packages are registered on first use. */
export async function openStreamStore(url: string, options: StoreOpenOptions = {}): Promise<ObjectStore> {
  if (!registered) {
    registerFsStore();
    registered = true;
  }
  return openStore(url, options);
}
