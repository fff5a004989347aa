// @qforge/backend-tfjs: the entry the registry loads.
import type { BackendFactory } from '@qforge/core';
import { TfjsBackend } from './backend';

export { TFJS_CAPABILITIES, TfjsBackend, chooseEngine, readModelJson } from './backend';
export type { TfjsEngine } from './backend';
export const backendFactory: BackendFactory = { id: 'tfjs', create: () => new TfjsBackend() };
export default backendFactory;
