/** What the replication daemons tell their metrics, beyond the streams they move. */
export interface ReplicationMetrics {
  /** replicate send: stream `seq` of the series is stored (registered streams: `seq + 1`). */
  streamSent(seq: number): void;
  /** replicate receive: stream `seq` is on the target; its snapshot was made at `creation` (unix seconds). */
  streamApplied(seq: number, creation: number): void;
}

export const noReplicationMetrics: ReplicationMetrics = { streamSent: () => {}, streamApplied: () => {} };
