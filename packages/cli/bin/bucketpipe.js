#!/usr/bin/env node
// The command npm links at install time. It is committed (with its run bit) rather than pointing
// the bin at dist/bin.js, which does not exist yet when `npm ci` links bins in a fresh checkout
// and which tsc emits without a run bit.
import '../dist/bin.js';
