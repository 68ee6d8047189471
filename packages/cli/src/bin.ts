#!/usr/bin/env node
import { main } from './main.js';

// Exit explicitly: a source command still draining or a stdin handle must not keep us alive
// after the outcome is decided. stderr/stdout writes are complete by now (pipes and files are
// written synchronously or awaited).
process.exit(await main(process.argv.slice(2)));
