import { join } from 'node:path';
import { runBackendConformance } from '@qforge/testkit';
import { backendFactory } from './index';

runBackendConformance({
  factory: backendFactory,
  fixtures: { model: join(__dirname, '..', '..', '..', 'examples', 'mnist', 'tfjs', 'model.json'), dataset: 'mnist:calib', samples: 8 },
});
