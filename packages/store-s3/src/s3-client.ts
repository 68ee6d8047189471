import { Agent as HttpAgent } from 'node:http';
import { Agent as HttpsAgent } from 'node:https';
import { S3Client, type S3ClientConfig } from '@aws-sdk/client-s3';
import { StoreError } from '@bucketpipe/core';
import type { S3Settings } from './s3-options.js';
import { UndiciHttpHandler } from './undici-handler.js';

/** Parts of one multipart upload in flight at once (lib-storage's queueSize). */
export const MULTIPART_QUEUE = 4;
/** Give up connecting after this long: a wrong or firewalled endpoint must fail in seconds. */
export const CONNECT_TIMEOUT_MS = 5_000;
/** A socket silent for this long is dead (a server may think a while before answering a large PUT). */
export const SOCKET_TIMEOUT_MS = 120_000;

export interface S3Clients {
  /** For single requests: no SDK retries, core's withRetry retries by StoreError kind. */
  client: S3Client;
  /**
   * For the parts of a multipart upload: a few SDK retries per part, so that one lost part does
   * not make core upload the whole (possibly gigabytes large) object again.
   */
  partsClient: S3Client;
  destroy(): void;
}

/**
 * Builds the SDK clients. Deliberate choices, measured in README.md:
 * - checksums only where an operation requires one (`WHEN_REQUIRED`): with the defaults, non-AWS
 *   servers stored the aws-chunked framing inside objects or answered 411, and the CRC32 repeats
 *   what TLS and each chunk's own SHA-256 already guarantee;
 * - over https the payload is not hashed for SigV4 (UNSIGNED-PAYLOAD): TLS protects it in transit
 *   and the receiver verifies every chunk's SHA-256; over plain http the SHA-256 is kept, so that
 *   the server rejects a body damaged on the way instead of storing it;
 * - HTTP on the SDK's NodeHttpHandler with keep-alive agents of our own, or on undici
 *   (`httpClient`, undici-handler.ts), with the same pool size and timeouts.
 */
export function createS3Clients(settings: S3Settings, region: string): S3Clients {
  // A few sockets more than the caller's requests: the manifest and cursor writes, listings, and
  // the parts of multipart uploads run beside the chunk transfers.
  const maxSockets = settings.concurrency * MULTIPART_QUEUE + 16;
  const node = settings.httpClient === 'node';
  const httpAgent = node ? new HttpAgent({ keepAlive: true, maxSockets, maxFreeSockets: Math.min(maxSockets, 256) }) : undefined;
  const httpsAgent = node ? new HttpsAgent({ keepAlive: true, maxSockets, maxFreeSockets: Math.min(maxSockets, 256) }) : undefined;
  // One handler for both clients: they share the sockets.
  const requestHandler = node
    ? { httpAgent, httpsAgent, connectionTimeout: CONNECT_TIMEOUT_MS, socketTimeout: SOCKET_TIMEOUT_MS }
    : new UndiciHttpHandler({ connections: maxSockets, connectTimeoutMs: CONNECT_TIMEOUT_MS, socketTimeoutMs: SOCKET_TIMEOUT_MS });
  const config: S3ClientConfig = {
    region,
    forcePathStyle: settings.pathStyle,
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
    ...(settings.endpoint === undefined ? { followRegionRedirects: true } : { endpoint: settings.endpoint }),
  };
  const unsigned = settings.endpoint === undefined || settings.endpoint.startsWith('https:');
  const client = new S3Client({ ...config, maxAttempts: 1, requestHandler });
  const partsClient = new S3Client({ ...config, maxAttempts: 3, requestHandler });
  if (unsigned) {
    for (const c of [client, partsClient]) {
      c.middlewareStack.add(
        (next) => async (args) => {
          const request = args.request as { headers?: Record<string, string> };
          // The signer takes a payload hash it finds in this header instead of hashing the body.
          if (request.headers) request.headers['x-amz-content-sha256'] = 'UNSIGNED-PAYLOAD';
          return next(args);
        },
        { step: 'build', name: 'bucketpipeUnsignedPayload' },
      );
    }
  }
  return {
    client,
    partsClient,
    destroy() {
      client.destroy();
      partsClient.destroy();
      httpAgent?.destroy();
      httpsAgent?.destroy();
    },
  };
}

/**
 * The region: given, else from the standard chain (AWS_REGION, AWS_DEFAULT_REGION, the profile),
 * else us-east-1 for a custom endpoint (most S3-compatible servers ignore it). AWS itself without
 * a region is an error that says how to set one.
 */
export async function resolveRegion(settings: S3Settings, bucket: string): Promise<string> {
  if (settings.region !== undefined) return settings.region;
  const probe = new S3Client({});
  try {
    return await probe.config.region();
  } catch {
    if (settings.endpoint !== undefined) return 'us-east-1';
    throw new StoreError('fatal', `no AWS region known for s3://${bucket}: set AWS_REGION, a region in the AWS profile, or --s3-region`);
  } finally {
    probe.destroy();
  }
}

/** The SDK prints a multi-line NodeVersionSupportWarning on Node < 22; bucketpipe supports Node 20.19+ and keeps stderr to one line per event. */
export function silenceSdkNodeVersionWarning(env: NodeJS.ProcessEnv = process.env): void {
  env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
}
