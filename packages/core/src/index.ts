// The package's surface, from its four layers: protocol/ (chunk objects, the manifest, digests,
// encryption: docs/FORMAT.md), codec/ (compression and checks on worker threads, in reused
// buffers), store/ (the store interface, locations, retries, decorators) and pipelines/ (send,
// receive, relay, verify, takeover and resume); beside them what every layer shares.
export * from './abort.js';
export { chunkObjectBound } from './codec/codec.js';
export { CodecPool } from './codec/codec-pool.js';
export { SlabPool } from './codec/slab-pool.js';
export * from './errors.js';
export * from './pipelines/chunk-fetch.js';
export * from './pipelines/chunk-reader.js';
export * from './pipelines/manifest-follow.js';
export * from './pipelines/process-identity.js';
export * from './pipelines/receive-resume.js';
export * from './pipelines/receiver.js';
export * from './pipelines/relay.js';
export * from './pipelines/sender.js';
export type { Sink } from './pipelines/sink.js';
export * from './pipelines/stream-listing.js';
export * from './pipelines/stream-removal.js';
export { DEFAULT_STALE_AFTER_MS, senderGoneHere, senderInfo } from './pipelines/takeover.js';
export * from './pipelines/verify.js';
export * from './protocol/chunk.js';
export { ENCRYPTION_KEY_LENGTH, EncryptionKey, type ManifestEncryption } from './protocol/encryption.js';
export { isRecord, parseJsonObject } from './protocol/json.js';
export * from './protocol/limits.js';
export * from './protocol/manifest.js';
export * from './protocol/receiver-cursor.js';
export * from './protocol/rfc3339.js';
export * from './protocol/stream-digest.js';
export * from './protocol/stream-id.js';
export * from './protocol/stream-status.js';
export * from './store/conditional-write.js';
export * from './store/counting-store.js';
export * from './store/location.js';
export * from './store/prefixed-store.js';
export * from './store/rate-limited-store.js';
export * from './store/retry.js';
export * from './store/store.js';
export * from './store/token-bucket.js';
export * from './units.js';
