import { registerStoreFactory } from '@bucketpipe/core';
import { FsStore, type FsStoreOptions } from './fs-store.js';

export { FsStore, type FsStoreOptions };

/** Makes `file://` URLs and plain paths open an FsStore. */
export function registerFsStore(): void {
  registerStoreFactory('file', async (location, options) => {
    if (!('path' in location)) throw new TypeError('file store needs a path location');
    return FsStore.open(location.path, { durable: options.fsync !== false, directIo: options.directIo !== false });
  });
}
