// Shared Jest setup: TypeScript through SWC (type checking is the build's job), tests beside code.
module.exports = {
  testEnvironment: require.resolve('./jest.environment.js'),
  transform: { '^.+\\.(t|j)s$': ['@swc/jest', { jsc: { target: 'es2022' }, module: { type: 'commonjs' } }] },
  testMatch: ['<rootDir>/src/**/*.test.ts', '<rootDir>/test/**/*.test.ts'],
  testPathIgnorePatterns: ['/node_modules/', '/dist/'],
  moduleFileExtensions: ['ts', 'js', 'json'],
  testTimeout: 120000,
  reporters: ['default', require.resolve('./tools/jest-summary-reporter.js')],
};
