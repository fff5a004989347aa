// @qforge/testkit: the conformance suite for backend authors.
export { runBackendConformance } from './conformance';
export type { ConformanceFixtures, ConformanceOptions, ConformanceSuite } from './conformance';
