const OWN = /^bp-\d{8}T\d{6}Z$/;

/** The name bucketpipe gives its own snapshots: `bp-20261204T193501Z` (UTC; sorts in time order). */
export function bucketpipeSnapshotName(at: Date): string {
  return `bp-${at
    .toISOString()
    .replace(/[-:]/g, '')
    .replace(/\.\d+Z$/, 'Z')}`;
}

/** Whether bucketpipe made this snapshot (by its name, the part after @): only those may it destroy. */
export function isBucketpipeSnapshotName(name: string): boolean {
  return OWN.test(name);
}
