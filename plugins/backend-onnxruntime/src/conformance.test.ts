import { join } from 'node:path';
import { loadModel, makeTensor, saveModel, tensorToFloat32 } from '@qforge/onnx';
import { runBackendConformance } from '@qforge/testkit';
import { backendFactory } from './index';

runBackendConformance({
  factory: backendFactory,
  fixtures: {
    model: join(__dirname, '..', '..', '..', 'examples', 'mnist', 'mnist-cnn.onnx'),
    dataset: 'mnist:calib',
    samples: 16,
    // Every weight negated and shifted: the same graph computing something else, which verify must fail.
    perturb: async (model, dir) => {
      const loaded = loadModel(model.path);
      const g = loaded.proto.graph;
      g.initializer = g.initializer.map((t) => (t.dataType === 1 && t.dims.length > 1 ? makeTensor(t.name, t.dims.map(Number), Float32Array.from(tensorToFloat32(t), (v) => 0.1 - v)) : t));
      const path = join(dir, 'perturbed.onnx');
      await saveModel(loaded.proto, path);
      return { path, format: 'onnx' };
    },
  },
});
