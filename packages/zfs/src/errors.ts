import { BucketpipeError, ExitCode } from '@bucketpipe/core';

/** A zfs command failed or ZFS is not there: one line, with zfs's own words. */
export class ZfsError extends BucketpipeError {
  constructor(code: string, message: string, exitCode: ExitCode = ExitCode.sourceFailed) {
    super(code, message, exitCode);
  }
}
