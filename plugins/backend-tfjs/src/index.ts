// @qforge/backend-tfjs: the entry the registry loads.
import type { BackendFactory } from '@qforge/core';
import { TfjsBackend } from './backend';

export { TFJS_CAPABILITIES, TfjsBackend } from './backend';
export { chooseEngine, loadTf, loadTfModel, readArtifacts } from './engine';
export type { LoadedTfModel, TfjsEngine } from './engine';
export { readModelJson } from './model-json';
export const backendFactory: BackendFactory = { id: 'tfjs', create: () => new TfjsBackend() };
export default backendFactory;
