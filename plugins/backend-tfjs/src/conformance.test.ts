import { copyFileSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { runBackendConformance } from '@qforge/testkit';
import { backendFactory } from './index';

runBackendConformance({
  factory: backendFactory,
  fixtures: {
    model: join(__dirname, '..', '..', '..', 'examples', 'mnist', 'tfjs', 'model.json'),
    dataset: 'mnist:calib',
    samples: 8,
    // The same topology with every float32 weight negated and shifted: verify must fail it.
    perturb: (model, dir) => {
      const json = JSON.parse(readFileSync(model.path, 'utf8')) as { weightsManifest: { paths: string[] }[] };
      for (const shard of json.weightsManifest.flatMap((m) => m.paths)) {
        const bytes = readFileSync(join(dirname(model.path), shard));
        const w = new Float32Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength));
        writeFileSync(join(dir, shard), Buffer.from(Float32Array.from(w, (v) => 0.1 - v).buffer));
      }
      copyFileSync(model.path, join(dir, 'model.json'));
      return { path: join(dir, 'model.json'), format: model.format };
    },
  },
});
