import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';

export type MeteredCommand = 'send' | 'receive' | 'relay';

/** Object-store latencies: a manifest PUT takes milliseconds, a 16 MiB chunk over a WAN seconds. */
const LATENCY_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120];

/**
 * The metrics of one bucketpipe process. Every series carries `command` (send, receive, relay);
 * the other labels are low-cardinality: `store` (stream; source or destination for relay), `op`
 * (put, get, head, list, delete), `object` (chunk, manifest, receiver, other), `kind` (a
 * StoreError kind) and `receiver` (one per receiver following the stream).
 */
export class TransferMetrics {
  readonly registry = new Registry();
  readonly command: MeteredCommand;

  // The transfer, from the pipelines' progress.
  readonly sourceBytes: Counter;
  readonly rawBytes: Counter;
  readonly storedBytes: Counter;
  readonly chunks: Counter;
  readonly watermark: Gauge;
  readonly position: Gauge;

  // Every request made of a store (MeteredStore).
  readonly requestSeconds: Histogram<'store' | 'op' | 'object'>;
  readonly requestsInFlight: Gauge<'store' | 'op'>;
  readonly putBytesInFlight: Gauge<'store'>;
  readonly storeBytes: Counter<'store' | 'op'>;
  readonly storeErrors: Counter<'store' | 'op' | 'kind'>;
  readonly retries: Counter<'store' | 'op' | 'kind'>;

  // The sink (receive; MeteredSink).
  readonly sinkBlockedSeconds: Counter;
  readonly sinkStalls: Counter;
  /** Lets the sink account the time of a write still waiting before the counter is read. */
  beforeSinkCollect: (() => void) | undefined;

  constructor(command: MeteredCommand) {
    this.command = command;
    const registers = [this.registry];
    // Series that mean nothing for a command are not exported by it (a relay never sees raw bytes).
    const only = (...commands: MeteredCommand[]) => (commands.includes(command) ? registers : []);
    this.registry.setDefaultLabels({ command });
    collectDefaultMetrics({ register: this.registry });

    this.sourceBytes = new Counter({
      name: 'bucketpipe_source_bytes_total',
      help: 'send: raw bytes read from the source (a takeover re-reads the stored prefix to verify it)',
      registers: only('send'),
    });
    this.rawBytes = new Counter({
      name: 'bucketpipe_raw_bytes_total',
      help: 'Raw (uncompressed) bytes of the chunks this process finished: send: stored below the watermark; receive: written to the sink',
      registers: only('send', 'receive'),
    });
    this.storedBytes = new Counter({
      name: 'bucketpipe_stored_bytes_total',
      help: 'Stored (compressed) bytes of chunk objects: send: stored below the watermark; receive: downloaded; relay: copied',
      registers,
    });
    this.chunks = new Counter({
      name: 'bucketpipe_chunks_total',
      help: 'Chunks this process finished: send: stored below the watermark; receive: written to the sink; relay: copied',
      registers,
    });
    this.watermark = new Gauge({
      name: 'bucketpipe_watermark_chunks',
      help: "The stream's watermark (every chunk below it is stored): send: its own; receive and relay: the upstream manifest's, as last read",
      registers,
    });
    this.position = new Gauge({
      name: 'bucketpipe_position_chunks',
      help: 'receive: chunks written to the sink; relay: the watermark published to the destination',
      registers: only('receive', 'relay'),
    });

    this.requestSeconds = new Histogram({
      name: 'bucketpipe_store_request_duration_seconds',
      help: 'Duration of successful store requests (a list: the whole listing), by operation and object kind',
      labelNames: ['store', 'op', 'object'],
      buckets: LATENCY_BUCKETS,
      registers,
    });
    this.requestsInFlight = new Gauge({
      name: 'bucketpipe_store_requests_in_flight',
      help: 'Store requests in flight (after any --rate pacing: on the network)',
      labelNames: ['store', 'op'],
      registers,
    });
    this.putBytesInFlight = new Gauge({
      name: 'bucketpipe_store_put_bytes_in_flight',
      help: 'Bytes of PUT bodies in flight',
      labelNames: ['store'],
      registers,
    });
    this.storeBytes = new Counter({
      name: 'bucketpipe_store_bytes_total',
      help: 'Body bytes of successful store requests: put uploaded, get downloaded',
      labelNames: ['store', 'op'],
      registers,
    });
    this.storeErrors = new Counter({
      name: 'bucketpipe_store_errors_total',
      help: 'Failed store requests, by StoreError kind (precondition, auth, not-found, throttled, transient, fatal; unknown: not a StoreError)',
      labelNames: ['store', 'op', 'kind'],
      registers,
    });
    this.retries = new Counter({
      name: 'bucketpipe_store_retries_total',
      help: 'Store requests that failed with a retryable kind (throttled, transient) and are retried with backoff (the failure that exhausts the attempts counts too)',
      labelNames: ['store', 'op', 'kind'],
      registers,
    });

    this.sinkBlockedSeconds = new Counter({
      name: 'bucketpipe_sink_blocked_seconds_total',
      help: 'receive: time spent waiting for the sink to take writes, including the write waiting now (its rate is the fraction of time the sink is the bottleneck)',
      registers: only('receive'),
      collect: () => this.beforeSinkCollect?.(),
    });
    this.sinkStalls = new Counter({
      name: 'bucketpipe_sink_stalls_total',
      help: 'receive: writes the sink did not take within --stall-after',
      registers: only('receive'),
    });
  }

  /** A gauge computed when scraped. */
  gauge<L extends string>(name: string, help: string, labelNames: L[], collect: (gauge: Gauge<L>) => void | Promise<void>): Gauge<L> {
    return new Gauge<L>({
      name,
      help,
      labelNames,
      registers: [this.registry],
      collect() {
        return collect(this);
      },
    });
  }
}
