import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { UsageError } from '@bucketpipe/core';
import type { Health } from './health.js';
import type { TransferMetrics } from './registry.js';

export interface MetricsAddress {
  /** undefined: every interface. */
  host: string | undefined;
  port: number;
}

/** `host:port`, `[ipv6]:port`, or `:port` (every interface); port 0 lets the system choose. */
export function parseMetricsAddress(text: string): MetricsAddress {
  const match = /^(?:\[([0-9A-Fa-f:.]+)\]|([^:[\]\s]*)):(\d{1,5})$/.exec(text.trim());
  const port = Number(match?.[3]);
  if (!match || port > 65535) {
    throw new UsageError(`--metrics-addr ${text}: write it as host:port, e.g. 127.0.0.1:9464, [::1]:9464 or :9464 for every interface`);
  }
  const host = match[1] ?? match[2];
  return { host: host === '' ? undefined : host, port };
}

export interface MetricsServer {
  /** Where it listens, e.g. http://127.0.0.1:9464 (no trailing slash). */
  readonly url: string;
  close(): Promise<void>;
}

/**
 * Serves GET /metrics (Prometheus text format) and GET /healthz (200 with a small JSON body while
 * the transfer makes progress or legitimately waits, 503 when it has stalled). A port that cannot
 * be bound is a usage error, before anything else starts.
 */
export async function startMetricsServer(address: MetricsAddress, metrics: TransferMetrics, health: Health): Promise<MetricsServer> {
  const server: Server = createServer((request, response) => {
    const path = (request.url ?? '/').split('?')[0];
    if (request.method !== 'GET' && request.method !== 'HEAD') {
      response.writeHead(405, { allow: 'GET, HEAD' }).end();
      return;
    }
    if (path === '/metrics') {
      metrics.registry.metrics().then(
        (text) => response.writeHead(200, { 'content-type': metrics.registry.contentType }).end(text),
        (error: unknown) => response.writeHead(500, { 'content-type': 'text/plain' }).end(`${String(error)}\n`),
      );
    } else if (path === '/healthz') {
      const report = health.report();
      response
        .writeHead(report.status === 'stalled' ? 503 : 200, { 'content-type': 'application/json', 'cache-control': 'no-store' })
        .end(`${JSON.stringify(report)}\n`);
    } else {
      response.writeHead(404, { 'content-type': 'text/plain' }).end('bucketpipe: try /metrics or /healthz\n');
    }
  });
  server.keepAliveTimeout = 5000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', (error: NodeJS.ErrnoException) => {
      const why =
        error.code === 'EADDRINUSE'
          ? 'the address is in use'
          : error.code === 'EADDRNOTAVAIL'
            ? 'not an address of this host'
            : error.message;
      reject(new UsageError(`--metrics-addr ${address.host ?? ''}:${address.port}: cannot listen: ${why}`, 'BP_METRICS_ADDR'));
    });
    server.listen(address.port, address.host, resolve);
  });
  server.unref(); // the transfer keeps the process alive, never the metrics
  const bound = server.address() as AddressInfo;
  const host = bound.family === 'IPv6' ? `[${bound.address}]` : bound.address;
  return {
    url: `http://${host}:${bound.port}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
