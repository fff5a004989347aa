// The package version, read once from package.json so reports name the exact release.
// eslint-disable-next-line @typescript-eslint/no-require-imports
export const CORE_VERSION: string = (require('../package.json') as { version: string }).version;
