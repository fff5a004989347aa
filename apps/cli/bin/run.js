#!/usr/bin/env node
// The qforge binary: oclif runs the compiled commands.
require('@oclif/core').execute({ dir: __dirname }).catch(require('@oclif/core').handle);
