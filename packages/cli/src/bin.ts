#!/usr/bin/env node
import { main } from './main.js';
import { reportMainThread } from './main-thread-report.js';

// Exit explicitly: a source command still draining or a stdin handle must not keep us alive
// after the outcome is decided. stderr/stdout writes are complete by now (pipes and files are
// written synchronously or awaited).
const code = await main(process.argv.slice(2));
reportMainThread();
process.exit(code);
