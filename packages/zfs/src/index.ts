export { ZfsError } from './errors.js';
export { parseRecvFlags, parseSendFlags } from './flags.js';
export { datasetName } from './names.js';
export type { Snapshot } from './parse.js';
export { bucketpipeSnapshotName, isBucketpipeSnapshotName } from './snapshot-name.js';
export { StreamEndCheck, type StreamEndCheckOptions } from './stream-end-check.js';
export { Zfs, type ZfsOptions } from './zfs.js';
