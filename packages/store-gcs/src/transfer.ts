import type { File } from '@google-cloud/storage';

/**
 * The two streaming calls of @google-cloud/storage as promises that honour an AbortSignal
 * (destroying the stream aborts the HTTP request).
 */

export interface UploadOptions {
  resumable: boolean;
  metadata: { contentType: string; md5Hash?: string };
  preconditionOpts: { ifGenerationMatch?: string };
  timeoutMs: number;
}

/** Uploads `body` as the object's new generation; resolves with the generation the server assigned. */
export function uploadObject(file: File, body: Uint8Array, options: UploadOptions, signal?: AbortSignal): Promise<string> {
  return new Promise<string>((resolve, reject) => {
    signal?.throwIfAborted();
    const stream = file.createWriteStream({
      resumable: options.resumable,
      // Chunks carry their own SHA-256, checked by the receiver; see docs/TESTING.md for the cost measured.
      validation: false,
      metadata: options.metadata,
      preconditionOpts: options.preconditionOpts,
      timeout: options.timeoutMs,
    });
    const onAbort = () => stream.destroy(signal?.reason as Error);
    signal?.addEventListener('abort', onAbort, { once: true });
    const done = (error?: unknown) => {
      signal?.removeEventListener('abort', onAbort);
      if (signal?.aborted) return reject(signal.reason);
      if (error !== undefined) return reject(error);
      const generation = file.metadata.generation;
      if (generation === undefined || generation === null || generation === '') {
        return reject(new Error(`upload of ${file.name} succeeded but the response named no generation`));
      }
      resolve(String(generation));
    };
    stream.on('error', done);
    stream.once('finish', () => done());
    stream.end(Buffer.from(body.buffer, body.byteOffset, body.byteLength));
  });
}

/**
 * Downloads the object or an inclusive byte range of it into a buffer of its own (not Node's shared
 * pool). The client's read stream neither ends nor fails when a body stops short of its
 * Content-Length (connection closed or reset mid-body) or stalls, and its timeout does not cover
 * the body: so the length is checked, a close without an end is a failure, and a body that sends
 * nothing for `idleTimeoutMs` is given up. Those failures carry network error codes (ECONNRESET,
 * ETIMEDOUT), which the store maps to retryable errors.
 */
export function downloadObject(
  file: File,
  range: { start: number; end: number } | undefined,
  options: { idleTimeoutMs: number; into?: Uint8Array },
  signal?: AbortSignal,
): Promise<{ body: Uint8Array; generation: string }> {
  return new Promise((resolve, reject) => {
    signal?.throwIfAborted();
    const stream = file.createReadStream({ validation: false, ...(range ?? {}) });
    const parts: Buffer[] = [];
    let total = 0;
    let generation: string | undefined;
    let expectedLength: number | undefined;
    let settled = false;
    let idle: NodeJS.Timeout | undefined;
    const armIdleTimer = () => {
      clearTimeout(idle);
      idle = setTimeout(
        () => stream.destroy(networkError('ETIMEDOUT', `download of ${file.name} sent nothing for ${options.idleTimeoutMs} ms`)),
        options.idleTimeoutMs,
      );
    };
    const onAbort = () => stream.destroy(signal?.reason as Error);
    signal?.addEventListener('abort', onAbort, { once: true });
    const finish = (error?: unknown) => {
      if (settled) return;
      settled = true;
      clearTimeout(idle);
      signal?.removeEventListener('abort', onAbort);
      if (signal?.aborted) return reject(signal.reason);
      if (error !== undefined) return reject(error);
      if (generation === undefined) return reject(new Error(`download of ${file.name} came without an x-goog-generation header`));
      if (expectedLength !== undefined && total !== expectedLength) {
        return reject(networkError('ECONNRESET', `download of ${file.name} ended after ${total} of ${expectedLength} bytes`));
      }
      const into = options.into;
      const body =
        into !== undefined && into.length >= total
          ? into.subarray(0, total)
          : new Uint8Array(Buffer.allocUnsafeSlow(total).buffer, 0, total);
      let at = 0;
      for (const part of parts) {
        body.set(part, at);
        at += part.length;
      }
      resolve({ body, generation });
    };
    armIdleTimer();
    stream.on('response', (response: { headers?: Record<string, string | string[] | undefined> }) => {
      armIdleTimer();
      const value = response.headers?.['x-goog-generation'];
      generation = Array.isArray(value) ? value[0] : value;
      const length = Number(response.headers?.['content-length']);
      if (Number.isSafeInteger(length) && length >= 0) expectedLength = length;
    });
    stream.on('data', (part: Buffer) => {
      armIdleTimer();
      parts.push(part);
      total += part.length;
    });
    stream.once('end', () => finish());
    stream.on('error', finish);
    stream.once('close', () => finish(networkError('ECONNRESET', `download of ${file.name} was cut off after ${total} bytes`)));
  });
}

function networkError(code: string, message: string): Error {
  return Object.assign(new Error(message), { code });
}
