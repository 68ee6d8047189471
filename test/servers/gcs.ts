import { GcsJsonApiServer } from './gcs-server/server.js';

export type { FaultRule } from './gcs-server/faults.js';
export type { LoggedRequest } from './gcs-server/server.js';
export { GcsJsonApiServer };

/** A bucket every server starts with, so that end-to-end tests need no setup step. */
export const GCS_TEST_BUCKET = 'bucketpipe-test';

/**
 * Starts the in-memory GCS JSON API test server on 127.0.0.1 (a free port). Clients reach it with
 * `new Storage({ apiEndpoint: endpoint })`, bucketpipe with `--gcs-endpoint <endpoint>`. Other
 * buckets are created the way a real project gets them (bucket insert, POST /storage/v1/b).
 */
export async function startGcsServer(): Promise<{ connection: { endpoint: string }; server: GcsJsonApiServer; stop(): Promise<void> }> {
  const server = new GcsJsonApiServer();
  server.state.createBucket(GCS_TEST_BUCKET);
  const endpoint = await server.listen();
  return { connection: { endpoint }, server, stop: () => server.close() };
}
