import { availableParallelism } from 'node:os';
import { CodecPool, formatBytes, type VerifyReport, verifyExitCode, verifyStream } from '@bucketpipe/core';
import { exactlyOnePositional, integerOption, type OptionSpec, parseCommandLine } from '../args.js';
import { encryptionKeyOption, encryptionOptionHelp, encryptionOptionSpec } from '../encryption-option.js';
import type { Log } from '../log/index.js';
import { ProgressReporter } from '../progress.js';
import { interruptSignal } from '../signals.js';
import { storeOpenOptions, storeOptionSpec, storeOptionsHelp } from '../store-options.js';
import { openStreamStore } from '../stores.js';

export const verifyHelp = `usage: bucketpipe verify <stream-url> [options]

Checks a whole stream where it is stored, writing nothing: reads and fully decodes every chunk the
manifest counts (header, stream id, index, length, payload checksum, decryption, decompression, raw
digest),
finds missing chunks and stray objects under chunks/, and for a complete stream compares the
stream digest with the manifest's. Reports every bad chunk, one line each, then a verdict.
Missing chunks are not waited for: this is what the store holds now.

A stream still being written is checked up to its current watermark (exit 0 when all of that is
good: "INCOMPLETE"); an aborted stream exits 6 even when what it stored is intact.

options:
  --json                print the report as one JSON object instead of lines
  --concurrency N       chunks read and checked at once, each holding about two chunk sizes of
                        memory (default 8)
  --threads N           decompression/checksum threads (default: one per core, ${availableParallelism()} here)
${encryptionOptionHelp}.
                        Required for an encrypted stream, refused for a plain one
  -q, --quiet           no progress line
  -h, --help

exit status: 0 all good (or good so far while sending), 2 bad options or a missing or wrong key,
3 no stream at the URL, 4 malformed or newer manifest or a key given for a plain stream, 5 a bad or missing chunk or a digest mismatch, 6 the stream was aborted.

${storeOptionsHelp}

example:
  bucketpipe verify gs://migr-gcp/pgdata
`;

const spec: OptionSpec = {
  json: { type: 'boolean' },
  concurrency: { type: 'string' },
  threads: { type: 'string' },
  quiet: { type: 'boolean', short: 'q' },
  ...storeOptionSpec,
  ...encryptionOptionSpec,
};

export async function runVerify(argv: string[], log: Log): Promise<number> {
  const parsed = parseCommandLine(argv, spec, 'verify');
  const url = exactlyOnePositional(parsed, 'verify');
  const { values } = parsed;
  const concurrency = integerOption(values, 'concurrency', 8, 1, 256);
  const threads = integerOption(values, 'threads', availableParallelism(), 1, 256);
  const encryption = await encryptionKeyOption(values);

  const store = await openStreamStore(url, storeOpenOptions(values, { concurrency: String(concurrency) }));
  const progress = new ProgressReporter(log, { quiet: values.quiet === true });
  if (encryption.warning) progress.warning(encryption.warning);
  const interrupt = interruptSignal();
  const codec = new CodecPool(threads);
  try {
    const report = await verifyStream({
      store,
      concurrency,
      encryptionKey: encryption.key,
      codec,
      signal: interrupt.signal,
      onProgress: (p) =>
        progress.update({
          bytes: p.storedBytes,
          unit: 'read',
          expected: { bytes: p.storedBytesExpected, exact: true },
          fields: { chunksChecked: p.chunksChecked, chunksExpected: p.chunksExpected, storedBytes: p.storedBytes, problems: p.problems },
          line: (head) => `verify chunk ${p.chunksChecked}/${p.chunksExpected} · ${head}${p.problems > 0 ? ` · ${p.problems} bad` : ''}`,
        }),
    });
    process.stdout.write(values.json === true ? `${JSON.stringify(report, null, 2)}\n` : renderVerify(report, Date.now()));
    progress.summary({
      command: 'verify',
      stream: store.description,
      streamId: report.manifest.streamId,
      state: report.manifest.state,
      verdict: report.verdict,
      chunks: report.chunksChecked,
      problems: report.problems.length + report.problemsOmitted,
      rawBytes: report.rawBytes,
      storedBytes: report.storedBytes,
      seconds: Number(report.seconds.toFixed(3)),
      MBps: Number((report.rawBytes / 1e6 / Math.max(report.seconds, 1e-6)).toFixed(1)), // raw, as receive reports it
      digest: report.digest?.actual ?? null,
      requests: store.counts,
    });
    return verifyExitCode(report.verdict);
  } finally {
    interrupt.dispose();
    await codec.close();
    await store.close();
  }
}

/** One line per problem, then the verdict. */
export function renderVerify(report: VerifyReport, now: number): string {
  const lines = report.problems.map((p) => `${p.message} [${p.code}]`);
  if (report.problemsOmitted > 0) lines.push(`… and ${report.problemsOmitted} more problems (see --json for the kept ones)`);
  lines.push(verdictLine(report, now));
  return `${lines.join('\n')}\n`;
}

function verdictLine(r: VerifyReport, now: number): string {
  const m = r.manifest;
  const checked = `${r.chunksChecked} chunk${r.chunksChecked === 1 ? '' : 's'}, ${formatBytes(r.rawBytes)}`;
  const beyond =
    r.chunksBeyondWatermark > 0
      ? `; ${r.chunksBeyondWatermark} chunk objects beyond the watermark were not checked (allowed while not complete)`
      : '';
  switch (r.verdict) {
    case 'ok':
      return `OK: ${checked}, digest matches (stream ${m.streamId}, complete${m.encryption ? ', encrypted: every chunk authenticated' : ''})`;
    case 'incomplete': {
      const heartbeat = Math.max(0, Math.round((now - Date.parse(m.sender.heartbeatAt)) / 1000));
      return `INCOMPLETE: ${checked} below the watermark are good so far; the stream is still being written (sender ${m.sender.id}, heartbeat ${heartbeat}s ago), so its length and digest are not known yet${beyond}`;
    }
    case 'aborted':
      return `ABORTED: the sender aborted the stream (${m.abortReason ?? 'no reason given'}), it can never be received; the ${checked} it stored are intact${beyond}`;
    case 'failed': {
      const parts: string[] = [];
      if (r.chunksBad > 0) parts.push(`${r.chunksBad} of ${r.chunksExpected} chunks bad`);
      const unexpected = r.problems.filter((p) => p.code === 'BP_CHUNK_UNEXPECTED').length;
      if (unexpected > 0) parts.push(`${unexpected} unexpected object${unexpected === 1 ? '' : 's'} under chunks/`);
      if (r.problems.some((p) => p.code === 'BP_MANIFEST_COUNTS')) parts.push("the manifest's byte counts do not match its chunks");
      if (r.digest && !r.digest.matches) parts.push('the stream digest does not match final.digest');
      else if (r.digest) parts.push('digest matches');
      else if (m.state === 'complete') parts.push('stream digest not checked (bad chunks)');
      else parts.push(`stream ${m.state}`);
      return `FAILED: ${parts.join('; ')} (stream ${m.streamId})`;
    }
  }
}
