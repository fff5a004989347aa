#!/usr/bin/env node
// A real pretrained TensorFlow.js model and real photos, both from npm, for the TFLite converter:
//  - out/models/nsfwjs-mobilenet_v2/: the MobileNetV2 Keras model nsfwjs ships (as JS modules
//    holding model.json and a base64 weight shard), written back as a plain model.json + .bin.
//  - out/models/nsfwjs-mobilenet_v2_mid/: the MobileNetV2 *graph model* (converted SavedModel,
//    uint8-quantized weights) nsfwjs ships as `mobilenet_v2_mid`, written back the same way.
//  - out/data/photos/{calib,eval}/: 224×224 crops of the six demo photos in @vladmandic/face-api,
//    calibration crops from photos 1–3 and evaluation crops from photos 4–6 (never mixed).
// Rerun: `node tools/make-photo-fixture.js [outDir]` (seconds).
const { mkdirSync, writeFileSync } = require('node:fs');
const { dirname, join, resolve } = require('node:path');
const sharp = require('sharp');

const OUT = resolve(process.argv[2] ?? join(__dirname, '..', 'out'));
const CROPS_PER_PHOTO = Number(process.env.CROPS_PER_PHOTO ?? 24);

/** Writes nsfwjs' MobileNetV2 as model.json + group1-shard1of1.bin; returns the model.json path. */
function extractNsfwjsModel(dir = join(OUT, 'models', 'nsfwjs-mobilenet_v2')) {
  // nsfwjs exports no package.json: find its dist/ from the main entry (dist/cjs/index.js).
  const root = join(dirname(require.resolve('nsfwjs')), '..', 'models', 'mobilenet_v2');
  const json = require(join(root, 'model.min.js'));
  const shard = Buffer.from(require(join(root, 'group1-shard1of1.min.js')), 'base64');
  mkdirSync(dir, { recursive: true });
  const manifest = json.weightsManifest.map((g) => ({ ...g, paths: ['group1-shard1of1.bin'] }));
  writeFileSync(join(dir, 'group1-shard1of1.bin'), shard);
  writeFileSync(join(dir, 'model.json'), JSON.stringify({ format: 'layers-model', generatedBy: 'nsfwjs 4.4.0 (MobileNetV2, 224×224, 5 classes)', ...json, weightsManifest: manifest }));
  return join(dir, 'model.json');
}

/** Writes nsfwjs' MobileNetV2 graph model (two shards) as model.json + .bin files; returns the model.json path. */
function extractNsfwjsGraphModel(dir = join(OUT, 'models', 'nsfwjs-mobilenet_v2_mid')) {
  const root = join(dirname(require.resolve('nsfwjs')), '..', 'models', 'mobilenet_v2_mid');
  const json = require(join(root, 'model.min.js'));
  mkdirSync(dir, { recursive: true });
  const manifest = json.weightsManifest.map((g) => {
    for (const p of g.paths) writeFileSync(join(dir, `${p}.bin`), Buffer.from(require(join(root, `${p}.min.js`)), 'base64'));
    return { ...g, paths: g.paths.map((p) => `${p}.bin`) };
  });
  writeFileSync(join(dir, 'model.json'), JSON.stringify({ ...json, weightsManifest: manifest }));
  return join(dir, 'model.json');
}

/** Deterministic crops (position, scale, mirror) of one photo, resized to size×size. */
async function crops(photo, n, seed, size = 224) {
  let s = seed;
  const rand = () => ((s = (s * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
  const meta = await sharp(photo).metadata();
  const out = [];
  for (let k = 0; k < n; k++) {
    const side = Math.round(Math.min(meta.width, meta.height) * (0.35 + 0.65 * rand()));
    const left = Math.floor(rand() * (meta.width - side));
    const top = Math.floor(rand() * (meta.height - side));
    let img = sharp(photo).extract({ left, top, width: side, height: side }).resize(size, size);
    if (rand() < 0.5) img = img.flop();
    out.push(await img.png().toBuffer());
  }
  return out;
}

async function makePhotos(dir = join(OUT, 'data', 'photos'), perPhoto = CROPS_PER_PHOTO, size = 224) {
  const demo = join(dirname(require.resolve('@vladmandic/face-api/package.json')), 'demo');
  for (const [split, photos] of [['calib', [1, 2, 3]], ['eval', [4, 5, 6]]]) {
    mkdirSync(join(dir, split), { recursive: true });
    for (const p of photos) {
      const images = await crops(join(demo, `sample${p}.jpg`), perPhoto, p * 7919, size);
      images.forEach((png, k) => writeFileSync(join(dir, split, `sample${p}-${String(k).padStart(2, '0')}.png`), png));
    }
  }
  return dir;
}

module.exports = { extractNsfwjsModel, extractNsfwjsGraphModel, makePhotos };

if (require.main === module) {
  (async () => {
    console.log(`model  ${extractNsfwjsModel()}`);
    console.log(`model  ${extractNsfwjsGraphModel()}`);
    console.log(`photos ${await makePhotos()} (${CROPS_PER_PHOTO} crops per photo)`);
    console.log(`photos ${await makePhotos(join(OUT, 'data', 'photos-1024'), 4, 1024)} (4 crops per photo, 1024×1024, for segmenters)`);
  })().catch((e) => {
    console.error(e);
    process.exit(1);
  });
}
