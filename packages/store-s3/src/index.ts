import { registerStoreFactory } from '@bucketpipe/core';
import { readS3Settings, type S3Settings } from './s3-options.js';
import { S3ObjectStore, type S3StoreOptions } from './s3-store.js';

export type { ConditionalSupport } from './conditional-probe.js';
export { readS3Settings, type S3Settings } from './s3-options.js';
export { DEFAULT_MULTIPART_THRESHOLD, DEFAULT_PART_SIZE, S3ObjectStore, type S3StoreOptions } from './s3-store.js';

/**
 * Makes `s3://bucket/prefix` URLs open an S3ObjectStore. Reads the open options `s3Endpoint`,
 * `s3PathStyle`, `s3Region`, `allowUnconditionalWrites` and `concurrency` (see README.md);
 * credentials come only from the standard AWS chain.
 */
export function registerS3Store(): void {
  registerStoreFactory('s3', async (location, options) => {
    if (!('bucket' in location)) throw new TypeError('s3 store needs a bucket location');
    const settings: S3Settings = readS3Settings(options);
    const storeOptions: Omit<S3StoreOptions, 'region'> = { bucket: location.bucket, prefix: location.prefix, settings };
    return S3ObjectStore.open(storeOptions);
  });
}
