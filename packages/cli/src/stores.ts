import { CountingStore, openStore, parseStreamUrl, type StoreOpenOptions, UsageError, withRetry } from '@bucketpipe/core';
import { registerFsStore } from '@bucketpipe/store-fs';

/** Cloud store packages load only when a URL needs them: their SDKs cost a few hundred ms at startup. */
const cloudStores: Record<string, () => Promise<void>> = {
  s3: async () => (await import('@bucketpipe/store-s3')).registerS3Store(),
  gs: async () => (await import('@bucketpipe/store-gcs')).registerGcsStore(),
};
const registered = new Set<string>();

/**
 * Opens the store for a stream URL, counting its requests (for the summary line). A store package
 * is registered the first time a URL of its scheme is opened.
 */
export async function openStreamStore(url: string, options: StoreOpenOptions = {}): Promise<CountingStore> {
  const { scheme } = parseStreamUrl(url);
  if (!registered.has(scheme)) {
    const register = scheme === 'file' ? async () => registerFsStore() : cloudStores[scheme];
    if (!register) {
      const known = ['file', ...Object.keys(cloudStores)].map((s) => `${s}://`);
      throw new UsageError(
        `unknown URL scheme "${scheme}://" in ${JSON.stringify(url)}: supported are ${known.join(', ')} (or a plain directory path)`,
        'BP_URL_SCHEME',
      );
    }
    await register();
    registered.add(scheme);
  }
  // Opening talks to the store (a one-key listing): a dropped connection or a throttle is retried
  // like any request; auth, a missing bucket or an unreachable endpoint fail at once.
  return new CountingStore(await withRetry(() => openStore(url, options)));
}
