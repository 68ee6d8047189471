import type { ObjectStore, ReceiveProgress, RelayProgress, SendProgress, Sink } from '@bucketpipe/core';
import { Health } from './health.js';
import type { CommandMetrics } from './index.js';
import { lagBehind, ReceiverCursorLag, WatermarkLog } from './lag.js';
import { MeteredSink } from './metered-sink.js';
import { MeteredStore } from './metered-store.js';
import { type MeteredCommand, TransferMetrics } from './registry.js';
import type { ReplicationMetrics } from './replication.js';
import { replicationMetrics } from './replication-series.js';
import type { MetricsServer } from './server.js';

/** The metrics of a command run with --metrics-addr (loaded only then: prom-client costs ~80 ms at startup). */
export class EnabledMetrics implements CommandMetrics {
  readonly registry: TransferMetrics;
  readonly health: Health;
  server: MetricsServer | undefined;
  readonly #command: MeteredCommand;
  #streamId: string | undefined;
  /** send: its own watermark; relay: the watermark it published. The receivers' lag is measured against it. */
  #produced = new WatermarkLog();
  /** receive and relay: the upstream watermark as seen. Their own lag is measured against it. */
  #upstream = new WatermarkLog();
  #position = 0;
  #cursorLag: ReceiverCursorLag | undefined;
  #sink: MeteredSink | undefined;
  #waitingFor: string | null = null;
  #replication: ReplicationMetrics | undefined;
  #caughtUp: string | null = null;
  #last: { a: number; b: number; c: number; d: number } | undefined;
  /** receive: the sender's heartbeat (epoch ms) while the stream is being sent; undefined otherwise. */
  #senderHeartbeatAt: number | undefined;

  constructor(command: MeteredCommand, stallAfterMs: number) {
    this.#command = command;
    this.registry = new TransferMetrics(command);
    this.health = new Health(command, stallAfterMs);
    const m = this.registry;
    const health = this.health;

    m.gauge(
      'bucketpipe_stalled',
      'Whether /healthz answers 503: no progress for longer than --stall-after, not waiting upstream',
      [],
      (g) => {
        g.set(health.report().status === 'stalled' ? 1 : 0);
      },
    );
    m.gauge('bucketpipe_waiting', 'Whether the transfer is waiting for something upstream (the sender, a chunk in transit)', [], (g) => {
      g.set(health.report().status === 'waiting' ? 1 : 0);
    });
    m.gauge('bucketpipe_seconds_since_progress', 'Seconds since the transfer last moved (or stopped waiting upstream)', [], (g) => {
      g.set(health.report().secondsSinceProgress);
    });
    if (command !== 'send') {
      const own = () => lagBehind(this.#upstream, this.#position);
      const what = command === 'receive' ? 'chunks written to the sink' : 'the watermark published to the destination';
      m.gauge('bucketpipe_lag_chunks', `Chunks the upstream watermark (as last read) is ahead of ${what}`, [], (g) => {
        g.set(own().chunks);
      });
      m.gauge(
        'bucketpipe_lag_seconds',
        'Age of the oldest chunk not yet taken: seconds since this process first read a watermark above its position (0 when caught up)',
        [],
        (g) => {
          g.set(own().seconds);
        },
      );
    }
    if (command === 'receive') {
      m.gauge(
        'bucketpipe_sender_heartbeat_age_seconds',
        'Seconds since the heartbeat of the sender of the stream, as the manifest last said (re-read every --poll-interval while caught up; NaN when no sender is sending)',
        [],
        (g) => {
          const at = this.#senderHeartbeatAt;
          g.set(at === undefined ? Number.NaN : Math.max(0, (Date.now() - at) / 1000));
        },
      );
    }
    if (command !== 'receive') {
      const lags = async () => (this.#cursorLag && this.#streamId ? await this.#cursorLag.lags(this.#streamId, this.#produced) : new Map());
      m.gauge(
        'bucketpipe_receiver_lag_chunks',
        `Chunks each receiver following the stream is behind this ${command === 'send' ? 'sender' : "relay's destination"} (from its cursor, rewritten about once a second)`,
        ['receiver'],
        async (g) => {
          g.reset();
          for (const [receiver, lag] of await lags()) g.labels(receiver).set(lag.chunks);
        },
      );
      m.gauge(
        'bucketpipe_receiver_lag_seconds',
        'Seconds since the oldest chunk each receiver has not written was stored (this process clock; 0 when caught up)',
        ['receiver'],
        async (g) => {
          g.reset();
          for (const [receiver, lag] of await lags()) g.labels(receiver).set(lag.seconds);
        },
      );
    }
  }

  store(store: ObjectStore, role: 'stream' | 'source' | 'destination' = 'stream'): ObjectStore {
    const onChunkRead = this.#command === 'receive' ? (bytes: number) => this.registry.storedBytes.inc(bytes) : undefined;
    const metered = new MeteredStore(store, this.registry, role, onChunkRead);
    const followed = this.#command === 'send' ? 'stream' : this.#command === 'relay' ? 'destination' : undefined;
    if (role === followed) this.#cursorLag = new ReceiverCursorLag(metered);
    return metered;
  }

  sink(sink: Sink): Sink {
    this.#sink = new MeteredSink(sink, this.registry, this.health);
    return this.#sink;
  }

  replication(role: 'send' | 'receive'): ReplicationMetrics {
    this.#replication ??= replicationMetrics(this.registry, role);
    return this.#replication;
  }

  send(p: SendProgress): void {
    this.#nextStream(p.streamId);
    const m = this.registry;
    // Counters count this process's work: the first report (before any chunk is stored) is the baseline.
    const last = this.#last ?? { a: 0, b: p.watermark, c: p.rawBytesStored, d: p.storedBytes };
    if (p.rawBytesRead > last.a || p.watermark > last.b) this.health.progressed();
    m.sourceBytes.inc(p.rawBytesRead - last.a);
    m.chunks.inc(p.watermark - last.b);
    m.rawBytes.inc(p.rawBytesStored - last.c);
    m.storedBytes.inc(p.storedBytes - last.d);
    this.#last = { a: p.rawBytesRead, b: p.watermark, c: p.rawBytesStored, d: p.storedBytes };
    m.watermark.set(p.watermark);
    this.#produced.advance(p.watermark);
  }

  receive(p: ReceiveProgress): void {
    // Bytes and chunks are counted by the sink, stored bytes by the store: exact, whatever the progress baseline.
    this.#nextStream(p.streamId);
    this.registry.watermark.set(p.watermark);
    this.registry.position.set(p.chunksWritten);
    this.#senderHeartbeatAt = p.state === 'sending' ? Date.parse(p.senderHeartbeatAt) : undefined;
    this.#follow(p.watermark, p.chunksWritten);
  }

  relay(p: RelayProgress): void {
    this.#nextStream(p.streamId);
    const m = this.registry;
    const last = this.#last ?? { a: 0, b: 0, c: p.publishedWatermark, d: 0 };
    if (p.chunksCopied > last.a || p.publishedWatermark > last.c) this.health.progressed();
    m.chunks.inc(p.chunksCopied - last.a);
    m.storedBytes.inc(p.storedBytesCopied - last.b);
    this.#last = { a: p.chunksCopied, b: p.storedBytesCopied, c: p.publishedWatermark, d: 0 };
    m.watermark.set(p.sourceWatermark);
    m.position.set(p.publishedWatermark);
    this.#follow(p.sourceWatermark, p.publishedWatermark);
    this.#produced.advance(p.publishedWatermark);
    // A relay that has copied everything the source counts waits for the sender; it never says so through onWaiting.
    this.#caughtUp =
      p.state === 'sending' && p.publishedWatermark >= p.sourceWatermark ? 'the sender (every chunk of the source is copied)' : null;
    this.health.waiting(this.#waitingFor ?? this.#caughtUp);
  }

  waiting(what: string | null): void {
    this.#waitingFor = what;
    this.health.waiting(what ?? this.#caughtUp);
  }

  async close(): Promise<void> {
    await this.server?.close();
  }

  /** A replication daemon moves one stream after another: each starts from its own baseline. */
  #nextStream(streamId: string): void {
    if (streamId === this.#streamId) return;
    this.#streamId = streamId;
    this.#last = undefined;
    this.#produced = new WatermarkLog();
    this.#upstream = new WatermarkLog();
    this.#position = 0;
  }

  #follow(watermark: number, position: number): void {
    this.#upstream.advance(watermark);
    this.#position = position;
    this.#upstream.forgetBelow(position);
  }
}
