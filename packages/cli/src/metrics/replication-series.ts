import { Counter } from 'prom-client';
import type { TransferMetrics } from './registry.js';
import type { ReplicationMetrics } from './replication.js';

/**
 * The series-level series: streams sent or applied by this process, the newest one, and — for a
 * receiver — the replication lag, now minus the creation time of the newest snapshot the target
 * holds, computed when scraped so that it grows while nothing arrives.
 */
export function replicationMetrics(m: TransferMetrics, role: 'send' | 'receive'): ReplicationMetrics {
  let newest = -1;
  let creation: number | undefined;
  const done = new Counter({
    name: role === 'send' ? 'bucketpipe_streams_sent_total' : 'bucketpipe_streams_applied_total',
    help:
      role === 'send'
        ? 'replicate send: streams of the series this process stored completely'
        : 'replicate receive: streams of the series this process applied to the target',
    registers: [m.registry],
  });
  m.gauge(
    'bucketpipe_series_stream',
    `replicate ${role}: the newest stream of the series this process ${role === 'send' ? 'stored' : 'applied'} (-1: none yet)`,
    [],
    (g) => {
      g.set(newest);
    },
  );
  if (role === 'receive') {
    m.gauge(
      'bucketpipe_replication_lag_seconds',
      'replicate receive: now minus the creation time of the newest snapshot the target holds (NaN before the first is applied)',
      [],
      (g) => {
        g.set(creation === undefined ? Number.NaN : Math.max(0, Date.now() / 1000 - creation));
      },
    );
  }
  return {
    streamSent: (seq) => {
      done.inc();
      newest = seq;
    },
    streamApplied: (seq, snapshotCreation) => {
      done.inc();
      newest = seq;
      creation = snapshotCreation;
    },
  };
}
