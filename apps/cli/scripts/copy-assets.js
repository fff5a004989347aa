// Ships the embedded example with the CLI, so `qforge demo` works from an installed package too.
const { cpSync, mkdirSync } = require('node:fs');
const { join } = require('node:path');
const from = join(__dirname, '..', '..', '..', 'examples', 'mnist');
const to = join(__dirname, '..', 'assets', 'mnist');
mkdirSync(to, { recursive: true });
cpSync(from, to, { recursive: true });
