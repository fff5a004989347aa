#!/usr/bin/env node
// Packs an image folder into one batched float32 .npy [N, C, H, W] (or NHWC), preprocessed the way
// a model expects — what a Python user would write with numpy before calling a quantizer.
// Usage: node tools/images-to-npy.js <imageDir> <out.npy> --size WxH [--layout NCHW|NHWC]
//        [--mean 0.5,0.5,0.5 --std 0.5,0.5,0.5] [--fit cover|contain|fill|pad] [--channels 1|3]
const { writeFileSync } = require('node:fs');
const { resolve } = require('node:path');
const { encodeNpy, openDataset } = require('@qforge/core');

const args = process.argv.slice(2);
const flag = (name, dflt) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : dflt;
};
const [dir, out] = args;
if (!dir || !out || !flag('size')) {
  console.error('usage: node tools/images-to-npy.js <imageDir> <out.npy> --size WxH [--layout NCHW] [--mean …] [--std …] [--fit pad] [--channels 3]');
  process.exit(2);
}
const [width, height] = flag('size').split('x').map(Number);
const layout = flag('layout', 'NCHW');
const channels = Number(flag('channels', 3));
const nums = (v) => (v ? v.split(',').map(Number) : undefined);
const shape = layout === 'NCHW' ? [1, channels, height, width] : [1, height, width, channels];

(async () => {
  const ds = openDataset(resolve(dir), {
    inputs: [{ name: 'x', dtype: 'float32', shape }],
    image: { width, height, layout, channels, mean: nums(flag('mean')), std: nums(flag('std')), fit: flag('fit', 'cover') },
  });
  const parts = [];
  for await (const s of ds.samples()) parts.push(s.inputs.x.data);
  const data = new Float32Array(parts.length * parts[0].length);
  parts.forEach((p, i) => data.set(p, i * p.length));
  writeFileSync(resolve(out), encodeNpy([parts.length, ...shape.slice(1)], data));
  console.log(`wrote ${out}: [${[parts.length, ...shape.slice(1)].join(', ')}] float32`);
})().catch((e) => {
  console.error(e.message);
  process.exit(1);
});
