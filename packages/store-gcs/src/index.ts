import { registerStoreFactory } from '@bucketpipe/core';
import { DEFAULT_MD5_MAX_BYTES, DEFAULT_RESUMABLE_THRESHOLD, GcsObjectStore, type GcsStoreOptions } from './gcs-store.js';
import { parseOpenOptions } from './options.js';

export { toStoreError } from './errors.js';
export { DEFAULT_MD5_MAX_BYTES, DEFAULT_RESUMABLE_THRESHOLD, GcsObjectStore, type GcsStoreOptions };

/**
 * Makes `gs://bucket/prefix` URLs open a GcsObjectStore. Credentials: Application Default
 * Credentials, unless a custom endpoint is given (StoreOpenOptions `gcsEndpoint`, the CLI's
 * --gcs-endpoint, or the STORAGE_EMULATOR_HOST environment variable): then none are used.
 */
export function registerGcsStore(): void {
  registerStoreFactory('gs', async (location, options) => {
    if (!('bucket' in location)) throw new TypeError('gs:// store needs a bucket location');
    const { endpoint, concurrency } = parseOpenOptions(options);
    return GcsObjectStore.open({
      bucket: location.bucket,
      prefix: location.prefix,
      ...(endpoint === undefined ? {} : { endpoint }),
      ...(concurrency === undefined ? {} : { concurrency }),
    });
  });
}
