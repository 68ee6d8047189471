import type { TestProject } from 'vitest/node';

export interface S3TestServer {
  endpoint: string;
  region: string;
  accessKeyId: string;
  secretAccessKey: string;
}

export interface GcsTestServer {
  endpoint: string;
}

declare module 'vitest' {
  export interface ProvidedContext {
    s3: S3TestServer;
    gcs: GcsTestServer;
  }
}

/** Starts the real servers once for the whole run; tests read their addresses with inject('s3') / inject('gcs'). */
export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  // For quick unit-only runs: BUCKETPIPE_TEST_SERVERS=none npx vitest run --project unit
  if (process.env.BUCKETPIPE_TEST_SERVERS === 'none') return async () => {};
  // `project` is the root here (what it provides reaches every project's tests) and lists the
  // projects selected: `--project unit` alone needs no servers, and must run where Ceph is not installed.
  if (project.vitest.projects.every((p) => p.name === 'unit')) return async () => {};
  const [{ startS3Server }, { startGcsServer }] = await Promise.all([import('./servers/s3.js'), import('./servers/gcs.js')]);
  const [s3, gcs] = await Promise.all([startS3Server(), startGcsServer()]);
  project.provide('s3', s3.connection);
  project.provide('gcs', gcs.connection);
  return async () => {
    await Promise.allSettled([s3.stop(), gcs.stop()]);
  };
}
