import { execFile } from 'node:child_process';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

export interface S3Connection {
  endpoint: string;
  region: string;
  accessKeyId: string;
  secretAccessKey: string;
}

export interface S3Server {
  connection: S3Connection;
  stop(): Promise<void>;
}

const run = promisify(execFile);
const here = dirname(fileURLToPath(import.meta.url));
const REGION = 'us-east-1';

/**
 * The S3 server the tests use: the one named by BUCKETPIPE_TEST_S3_ENDPOINT (+ _ACCESS_KEY_ID,
 * _SECRET_ACCESS_KEY) when set, for fast local iteration (start one with
 * `eval "$(test/servers/ceph-up.sh /tmp/bp-ceph)"; export BUCKETPIPE_TEST_S3_…`), otherwise a
 * throwaway Ceph radosgw on 127.0.0.1 started by ceph-up.sh and stopped by ceph-down.sh.
 */
export async function startS3Server(): Promise<S3Server> {
  const reused = fromEnvironment();
  if (reused) return { connection: reused, stop: async () => {} };

  // Empty and ours: ceph-up.sh fills it, ceph-down.sh removes it.
  const dir = await mkdtemp(join(tmpdir(), 'bucketpipe-ceph-'));
  let stdout: string;
  try {
    ({ stdout } = await run('bash', [join(here, 'ceph-up.sh'), dir], { timeout: 60_000 }));
  } catch (error) {
    const { stderr, code } = error as { stderr?: string; code?: unknown };
    // ceph-up.sh exits 3 when the Ceph binaries are missing, with the one line that says what to install.
    const detail = stderr?.trim() || String(error);
    throw new Error(code === 3 ? detail : `could not start Ceph radosgw for the S3 tests: ${detail}`);
  }
  const values = Object.fromEntries(
    stdout
      .trim()
      .split('\n')
      .map((line) => line.split('=', 2) as [string, string]),
  );
  const connection = fromEnvironment(values);
  if (!connection) throw new Error(`ceph-up.sh printed no S3 connection: ${stdout}`);
  return {
    connection,
    stop: async () => {
      await run('bash', [join(here, 'ceph-down.sh'), dir], { timeout: 30_000 });
    },
  };
}

function fromEnvironment(env: Record<string, string | undefined> = process.env): S3Connection | undefined {
  const endpoint = env.BUCKETPIPE_TEST_S3_ENDPOINT;
  if (!endpoint) return undefined;
  const accessKeyId = env.BUCKETPIPE_TEST_S3_ACCESS_KEY_ID;
  const secretAccessKey = env.BUCKETPIPE_TEST_S3_SECRET_ACCESS_KEY;
  if (!accessKeyId || !secretAccessKey) {
    throw new Error(
      'BUCKETPIPE_TEST_S3_ENDPOINT is set: set BUCKETPIPE_TEST_S3_ACCESS_KEY_ID and BUCKETPIPE_TEST_S3_SECRET_ACCESS_KEY too',
    );
  }
  return { endpoint, region: env.BUCKETPIPE_TEST_S3_REGION || REGION, accessKeyId, secretAccessKey };
}
