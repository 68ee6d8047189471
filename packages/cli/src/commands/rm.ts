import { formatBytes, removeStream } from '@bucketpipe/core';
import { exactlyOnePositional, type OptionSpec, parseCommandLine } from '../args.js';
import type { Log } from '../log/index.js';
import { ProgressReporter } from '../progress.js';
import { interruptSignal } from '../signals.js';
import { storeOpenOptions, storeOptionSpec, storeOptionsHelp } from '../store-options.js';
import { openStreamStore } from '../stores.js';

export const rmHelp = `usage: bucketpipe rm <stream-url> [--force] [--dry-run]

Deletes a stream: its chunks, its receivers' cursors, and its manifest last, so that an interrupted
rm still shows in "bucketpipe ls" and can be run again. Streams nested below <stream-url> are kept.
Refuses (exit 4) while a receiver of the stream has not finished (its cursor is not "done") or a
sender is still sending (heartbeat younger than 60s).

options:
  --force       delete anyway: with unfinished receivers (they fail), a live sender (it fails at its
                next manifest write; chunks it uploads after that are left behind), an unreadable
                manifest, or leftover chunks and cursors without a manifest
  --dry-run     check and count, delete nothing
  -q, --quiet   no progress line
  -h, --help

${storeOptionsHelp}
`;

const spec: OptionSpec = {
  force: { type: 'boolean' },
  'dry-run': { type: 'boolean' },
  quiet: { type: 'boolean', short: 'q' },
  ...storeOptionSpec,
};

export async function runRm(argv: string[], log: Log): Promise<number> {
  const parsed = parseCommandLine(argv, spec, 'rm');
  const url = exactlyOnePositional(parsed, 'rm');
  const { values } = parsed;
  const dryRun = values['dry-run'] === true;
  const store = await openStreamStore(url, storeOpenOptions(values));
  const progress = new ProgressReporter(log, { quiet: values.quiet === true });
  const interrupt = interruptSignal();
  try {
    const summary = await removeStream(store, {
      force: values.force === true,
      dryRun,
      signal: interrupt.signal,
      onProgress: (deleted) =>
        progress.update({
          bytes: deleted.bytes,
          unit: 'deleted',
          fields: { objects: deleted.objects, bytes: deleted.bytes },
          line: (head) => `rm ${deleted.objects} objects, ${head}`,
        }),
    });
    for (const reason of summary.overridden) progress.message(`--force: ${reason}`, 'forced');
    const { chunks, receivers, total } = summary;
    progress.message(
      `${dryRun ? 'would delete' : 'deleted'} ${store.description}: ${chunks.objects} chunk${chunks.objects === 1 ? '' : 's'}, ` +
        `${receivers.objects} receiver cursor${receivers.objects === 1 ? '' : 's'}, ${summary.manifest.objects === 1 ? 'the manifest' : 'no manifest'} — ` +
        `${total.objects} objects, ${formatBytes(total.bytes)}`,
      dryRun ? 'would-delete' : 'deleted',
    );
    progress.summary({
      command: 'rm',
      stream: store.description,
      streamId: summary.streamId,
      state: summary.state,
      dryRun,
      forced: summary.overridden,
      objects: total.objects,
      bytes: total.bytes,
      chunks: chunks.objects,
      receivers: receivers.objects,
      seconds: Number(progress.elapsedSeconds.toFixed(3)),
      requests: store.counts,
    });
    return 0;
  } finally {
    interrupt.dispose();
    await store.close();
  }
}
