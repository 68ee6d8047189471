import { formatBytes, listReceiverCursors, type Manifest, type ReceiverCursor, readManifest, StoreError } from '@bucketpipe/core';
import { exactlyOnePositional, type OptionSpec, parseCommandLine } from '../args.js';
import { describeRatio } from '../progress.js';
import { storeOpenOptions, storeOptionSpec, storeOptionsHelp } from '../store-options.js';
import { openStreamStore } from '../stores.js';

export const inspectHelp = `usage: bucketpipe inspect <stream-url> [--json]

Shows where a stream stands: state, chunk size and codec, chunks and bytes stored so far, raw
versus stored size (stored is smaller because of compression, not loss), the sender's heartbeat,
and each receiver's position and lag.

options:
  --json        print the manifest and receivers as one JSON object
  -h, --help

${storeOptionsHelp}
`;

const spec: OptionSpec = { json: { type: 'boolean' }, ...storeOptionSpec };

export async function runInspect(argv: string[]): Promise<number> {
  const parsed = parseCommandLine(argv, spec, 'inspect');
  const url = exactlyOnePositional(parsed, 'inspect');
  const store = await openStreamStore(url, storeOpenOptions(parsed.values));
  try {
    const found = await readManifest(store);
    if (!found) {
      throw new StoreError('not-found', `no stream at ${store.description} (no manifest.json): check the URL, or start the sender first`);
    }
    const receivers = await listReceiverCursors(store);
    if (parsed.values.json === true) {
      process.stdout.write(`${JSON.stringify({ stream: store.description, manifest: found.manifest, receivers }, null, 2)}\n`);
    } else {
      process.stdout.write(renderInspect(store.description, found.manifest, receivers, Date.now()));
    }
    return 0;
  } finally {
    await store.close();
  }
}

export function renderInspect(where: string, m: Manifest, receivers: ReceiverCursor[], now: number): string {
  const age = (iso: string) => `${Math.max(0, Math.round((now - Date.parse(iso)) / 1000))}s ago`;
  const state =
    m.state === 'sending'
      ? `sending (sender ${m.sender.id}, heartbeat ${age(m.sender.heartbeatAt)})`
      : m.state === 'aborted'
        ? `aborted: ${m.abortReason ?? 'no reason given'}`
        : `complete (finished ${age(m.updatedAt)})`;
  const rows: Array<[string, string]> = [
    ['stream', where],
    ['id', m.streamId],
    ['state', state],
    ['created', `${m.createdAt} (${age(m.createdAt)})`],
    ['chunks', `${m.watermark} stored${m.state === 'sending' ? ' so far' : ''}, ${formatBytes(m.chunkSize)} each, zstd level ${m.level}`],
    ['raw', `${formatBytes(m.rawBytes)} (${m.rawBytes} bytes)`],
    ['stored', `${formatBytes(m.storedBytes)} — ${describeRatio(m.rawBytes, m.storedBytes)}`],
  ];
  if (m.final) rows.push(['digest', `${m.final.digest} (SHA-256 over the chunks' raw SHA-256s)`]);
  if (receivers.length === 0) rows.push(['receivers', 'none has published a position']);
  for (const r of receivers) {
    const lag = Math.max(0, m.watermark - r.position);
    const position =
      r.streamId !== null && r.streamId !== m.streamId
        ? 'following another stream id (stale)'
        : `chunk ${r.position}/${m.watermark}, ${formatBytes(r.rawBytes)} written, ${lag} chunk${lag === 1 ? '' : 's'} behind`;
    rows.push([
      `receiver ${r.receiverId}`,
      `${r.state}: ${position} (host ${r.host}, updated ${age(r.updatedAt)})${r.error ? ` — ${r.error}` : ''}`,
    ]);
  }
  const width = Math.max(...rows.map(([label]) => label.length));
  return `${rows.map(([label, value]) => `${label.padEnd(width)}  ${value}`).join('\n')}\n`;
}
