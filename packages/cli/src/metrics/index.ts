import type { ObjectStore, ReceiveProgress, RelayProgress, SendProgress, Sink } from '@bucketpipe/core';
import { UsageError } from '@bucketpipe/core';
import { durationOption, type OptionSpec, type ParsedCommandLine, stringOption } from '../args.js';
import type { Log } from '../log/index.js';
import type { MeteredCommand } from './registry.js';
import { noReplicationMetrics, type ReplicationMetrics } from './replication.js';
import { parseMetricsAddress, startMetricsServer } from './server.js';

export const DEFAULT_STALL_AFTER_MS = 60_000;

export const metricsOptionSpec: OptionSpec = { 'metrics-addr': { type: 'string' }, 'stall-after': { type: 'string' } };

export const metricsOptionsHelp = `  --metrics-addr HOST:PORT
                        serve Prometheus metrics at http://HOST:PORT/metrics and health at /healthz
                        (200 while the transfer moves or waits for its sender, 503 when stalled);
                        :PORT listens on every interface, port 0 picks a free one (printed)
  --stall-after D       with --metrics-addr: how long without progress /healthz tolerates (default ${DEFAULT_STALL_AFTER_MS / 1000}s)`;

/**
 * What a command tells its metrics: the stores and sink to measure, and the pipeline's progress.
 * Without --metrics-addr every method is a no-op and the stores and sink are passed through as
 * they are: no cost at all.
 */
export interface CommandMetrics {
  /** The store measured; `role` is its `store` label (stream; source or destination for relay). */
  store(store: ObjectStore, role?: 'stream' | 'source' | 'destination'): ObjectStore;
  sink(sink: Sink): Sink;
  send(progress: SendProgress): void;
  receive(progress: ReceiveProgress): void;
  relay(progress: RelayProgress): void;
  /** The replication daemons' series-level metrics (registered on the first call). */
  replication(role: 'send' | 'receive'): ReplicationMetrics;
  /** The pipeline's onWaiting: waiting for something upstream is not a stall. */
  waiting(what: string | null): void;
  /** Stops serving; the command's end. */
  close(): Promise<void>;
}

const disabled: CommandMetrics = {
  store: (store) => store,
  sink: (sink) => sink,
  send: () => {},
  receive: () => {},
  relay: () => {},
  replication: () => noReplicationMetrics,
  waiting: () => {},
  close: async () => {},
};

/** Starts the metrics server when --metrics-addr is given and says where it listens (on stderr). */
export async function startMetrics(command: MeteredCommand, values: ParsedCommandLine['values'], log: Log): Promise<CommandMetrics> {
  const addr = stringOption(values, 'metrics-addr');
  if (addr === undefined) {
    if (values['stall-after'] !== undefined) throw new UsageError('--stall-after applies only with --metrics-addr');
    return disabled;
  }
  const address = parseMetricsAddress(addr);
  const stallAfterMs = durationOption(values, 'stall-after', DEFAULT_STALL_AFTER_MS);
  const { EnabledMetrics } = await import('./enabled.js');
  const metrics = new EnabledMetrics(command, stallAfterMs);
  const server = await startMetricsServer(address, metrics.registry, metrics.health);
  metrics.server = server;
  log.info('metrics', `metrics on ${server.url}/metrics, health on ${server.url}/healthz`, {
    metricsUrl: `${server.url}/metrics`,
    healthUrl: `${server.url}/healthz`,
  });
  return metrics;
}
