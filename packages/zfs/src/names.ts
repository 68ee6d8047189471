import { UsageError } from '@bucketpipe/core';

// ZFS's own rule (zfs_namecheck.c): components of letters, digits and _ - . : and space; we leave
// the space out, since these names travel through command lines and unit files.
const COMPONENT = /^[A-Za-z0-9_.:-]+$/;

/** Checks a dataset name (`tank/pgdata`): a one-line UsageError naming what is wrong. */
export function datasetName(text: string): string {
  const parts = text.split('/');
  const bad =
    text.length === 0 ||
    text.length > 255 ||
    parts.some((part) => !COMPONENT.test(part) || part === '.' || part === '..') ||
    !/^[A-Za-z]/.test(text);
  if (bad) {
    throw new UsageError(
      `--dataset ${JSON.stringify(text)} is not a dataset name: write it as pool/path (letters, digits and _ - . :), without @snapshot`,
      'BP_DATASET_NAME',
    );
  }
  return text;
}
