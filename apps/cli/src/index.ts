// @qforge/cli: the command classes and the registry builder, for embedding and tests.
export { buildRegistry, BUNDLED_BACKENDS } from './lib/registry';
export { QforgeCommand } from './lib/base';
