import { parentPort } from 'node:worker_threads';
import { BucketpipeError, IntegrityError } from '../errors.js';
import { ChunkCodec } from './codec.js';
import type { CodecResult, WorkerReply, WorkerRequest } from './codec-jobs.js';

// Entry point of a codec worker thread: one job at a time; buffers that are not shared are transferred both ways.
const port = parentPort;
if (!port) throw new Error('codec-worker must run in a worker thread');
const codec = new ChunkCodec();

port.on('message', ({ id, job }: WorkerRequest) => {
  let reply: WorkerReply;
  let transfer: ArrayBufferLike[] = [];
  try {
    const result: CodecResult = job.kind === 'encode' ? codec.encode(job) : codec.decode(job);
    reply = { id, result };
    transfer = 'out' in result ? [result.raw.buffer, result.out.buffer] : [result.raw.buffer, result.object.buffer];
  } catch (error) {
    const known = error instanceof BucketpipeError;
    reply = {
      id,
      failure: {
        code: known ? error.code : 'BP_CODEC',
        message: error instanceof Error ? error.message : String(error),
        integrity: error instanceof IntegrityError,
      },
    };
    // Hand the buffers back even on failure so that the pool can reuse them.
    transfer = job.kind === 'encode' ? [job.raw.buffer, job.out.buffer] : [job.raw.buffer, job.object.buffer];
  }
  port.postMessage(
    reply,
    [...new Set(transfer)].filter((buffer) => buffer instanceof ArrayBuffer),
  );
});
