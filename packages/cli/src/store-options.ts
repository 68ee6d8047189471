import type { StoreOpenOptions } from '@bucketpipe/core';
import type { OptionSpec, ParsedCommandLine } from './args.js';
import { stringOption } from './args.js';

/** Options every command that opens a store accepts; values may also come from the environment. */
export const storeOptionSpec: OptionSpec = {
  's3-endpoint': { type: 'string' },
  's3-path-style': { type: 'boolean' },
  's3-region': { type: 'string' },
  'gcs-endpoint': { type: 'string' },
  'unsafe-unconditional-writes': { type: 'boolean' },
};

export const storeOptionsHelp = `store options (s3:// and gs:// URLs; credentials come from the standard AWS and Google chains):
  --s3-endpoint URL     an S3-compatible server (Ceph, MinIO, R2); env BUCKETPIPE_S3_ENDPOINT or AWS_ENDPOINT_URL_S3
  --s3-path-style       path-style addressing (http://host/bucket/key) on AWS itself; always used
                        with a custom endpoint; env BUCKETPIPE_S3_PATH_STYLE=1
  --s3-region REGION    default: from AWS_REGION / the profile; us-east-1 for a custom endpoint
  --gcs-endpoint URL    a GCS-compatible test server; env STORAGE_EMULATOR_HOST
  --unsafe-unconditional-writes
                        use a store that honours neither If-None-Match nor If-Match: two senders
                        could then overwrite each other's manifest unnoticed`;

/**
 * Chunk requests in flight unless --concurrency says otherwise: 16 when a stream lives in S3 or
 * GCS, where one connection's throughput is capped by the round trip (the slow-link bench case
 * (f), docs/PERFORMANCE.md: 16 moved 1.1 GB 1.2–1.3× faster than 8 through 10 MB/s, 20 ms links);
 * 8 for a directory, whose writes the thread pool serialises anyway. send's and receive's memory
 * is bounded by --buffer, not by this number (relay's is not, so relay keeps 8).
 */
export function defaultConcurrency(...urls: string[]): number {
  return urls.some((url) => /^(s3|gs):\/\//i.test(url)) ? CLOUD_CONCURRENCY : DIRECTORY_CONCURRENCY;
}

const CLOUD_CONCURRENCY = 16;
const DIRECTORY_CONCURRENCY = 8;

/** Turns the parsed flags (falling back to BUCKETPIPE_* environment variables) into store open options. */
export function storeOpenOptions(values: ParsedCommandLine['values'], extra: StoreOpenOptions = {}): StoreOpenOptions {
  const env = process.env;
  return {
    ...extra,
    s3Endpoint: stringOption(values, 's3-endpoint') ?? nonEmpty(env.BUCKETPIPE_S3_ENDPOINT),
    s3PathStyle: values['s3-path-style'] === true || envSwitch(env.BUCKETPIPE_S3_PATH_STYLE) === true,
    s3Region: stringOption(values, 's3-region'),
    gcsEndpoint: stringOption(values, 'gcs-endpoint'),
    allowUnconditionalWrites: values['unsafe-unconditional-writes'] === true,
    // The directory store's O_DIRECT chunk I/O (docs/OPERATIONS.md, "Directory store"): on unless turned off.
    directIo: envSwitch(env.BUCKETPIPE_DIRECT_IO) !== false,
  };
}

function nonEmpty(value: string | undefined): string | undefined {
  return value === undefined || value.trim() === '' ? undefined : value.trim();
}

/** An environment switch: true for 1/true/yes/on, false for 0/false/no/off, else undefined. */
function envSwitch(value: string | undefined): boolean | undefined {
  const word = value?.trim() ?? '';
  if (/^(1|true|yes|on)$/i.test(word)) return true;
  if (/^(0|false|no|off)$/i.test(word)) return false;
  return undefined;
}
