#!/usr/bin/env node
// One TCP connection carrying a byte stream, for bench case (f)'s single-stream baseline:
//   node bench/link-stream.mjs receive PORT_FILE   listens on 127.0.0.1 (a free port, written to
//                                                  PORT_FILE), takes one connection, copies it to stdout
//   node bench/link-stream.mjs send PORT           connects to 127.0.0.1:PORT, copies stdin into it
import { writeFileSync } from 'node:fs';
import { createConnection, createServer } from 'node:net';
import { pipeline } from 'node:stream/promises';

const [mode, where] = process.argv.slice(2);

if (mode === 'receive' && where) {
  const server = createServer((socket) => {
    server.close();
    pipeline(socket, process.stdout).catch(fail);
  });
  server.listen(0, '127.0.0.1', () => writeFileSync(where, String(server.address().port)));
} else if (mode === 'send' && /^\d+$/.test(where ?? '')) {
  const socket = createConnection({ host: '127.0.0.1', port: Number(where) });
  pipeline(process.stdin, socket).catch(fail);
} else {
  process.stderr.write('usage: link-stream.mjs receive PORT_FILE | send PORT\n');
  process.exitCode = 2;
}

function fail(error) {
  process.stderr.write(`link-stream ${mode}: ${error.message}\n`);
  process.exit(1);
}
