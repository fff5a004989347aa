#!/usr/bin/env node
// Seeded, time-bounded fuzzing of the qforge CLI: mutates ONNX models (bit flips, truncation,
// field edits through @qforge/onnx), TensorFlow.js models (model.json and weight edits) and
// datasets (.npy/.npz headers, images, FIFOs, symlinks), runs `qforge inspect|quantize|verify` on
// each in a child process, and reports crashes (exit codes other than 0/1/2, signals), hangs
// (timeouts), uncoded errors (the E_RUNTIME_FAILED "report a bug" fallback or no JSON error) and
// leftovers (.partial folders, temporary files, an -o output after a failure).
//
//   node tools/fuzz.js [--seed 1] [--cases 520] [--budget-seconds 900] [--jobs 2] [--timeout-seconds 60]
//
// Writes out/fuzz/fuzz-<seed>.json; exits 1 when anything above was found. Needs `npm run build`.
const { spawn, spawnSync } = require('node:child_process');
const { copyFileSync, cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } = require('node:fs');
const { tmpdir } = require('node:os');
const { join, resolve } = require('node:path');

const ROOT = resolve(__dirname, '..');
const BIN = join(ROOT, 'apps', 'cli', 'bin', 'run.js');
const core = require(join(ROOT, 'packages', 'core'));
const onnx = require(join(ROOT, 'packages', 'onnx'));

const args = Object.fromEntries(process.argv.slice(2).reduce((acc, a, i, all) => (a.startsWith('--') ? [...acc, [a.slice(2), all[i + 1]]] : acc), []));
const SEED = Number(args.seed ?? 1);
const CASES = Number(args.cases ?? 520);
const BUDGET_MS = Number(args['budget-seconds'] ?? 900) * 1000;
const JOBS = Number(args.jobs ?? 2);
const TIMEOUT_MS = Number(args['timeout-seconds'] ?? 60) * 1000;
const FALLBACK_HINT = 'report a bug';

const rnd = core.mulberry32(SEED);
const int = (n) => Math.floor(rnd() * n);
const pick = (xs) => xs[int(xs.length)];
const haveMkfifo = spawnSync('mkfifo', ['--version']).status === 0;

// ---- seeds -------------------------------------------------------------------------------------
const work = mkdtempSync(join(tmpdir(), 'qforge-fuzz-'));
const outside = join(work, 'outside');
mkdirSync(outside);
writeFileSync(join(outside, 'secret.bin'), Buffer.alloc(4096, 7));
const MNIST_ONNX = join(ROOT, 'examples', 'mnist', 'mnist-cnn.onnx');
const MNIST_TFJS = join(ROOT, 'examples', 'mnist', 'tfjs');
const mnistBytes = readFileSync(MNIST_ONNX);
/** y = relu(x · W + b), x [1,4]: small enough that every byte matters. */
function tinyModel() {
  const { makeNode, makeTensor, makeValueInfo, DataType } = onnx;
  return {
    irVersion: 8,
    opsetImport: [{ domain: '', version: 13 }],
    graph: {
      name: 'tiny',
      node: [makeNode('MatMul', ['x', 'w'], ['h'], 'mm'), makeNode('Add', ['h', 'b'], ['a'], 'add'), makeNode('Relu', ['a'], ['y'], 'relu')],
      initializer: [makeTensor('w', [4, 3], Float32Array.from({ length: 12 }, (_, i) => (i - 6) / 5)), makeTensor('b', [3], Float32Array.from([0.1, -0.2, 0.3]))],
      input: [makeValueInfo('x', DataType.FLOAT, [1, 4])],
      output: [makeValueInfo('y', DataType.FLOAT, [1, 3])],
      valueInfo: [],
    },
  };
}
const tinyBytes = Buffer.from(onnx.encodeModel(tinyModel()));

// ---- mutators ----------------------------------------------------------------------------------
function mutateBytes(buf) {
  const b = Buffer.from(buf);
  const kind = pick(['flip', 'flip', 'truncate', 'chunk', 'insert', 'delete', 'duplicate']);
  if (kind === 'flip') for (let k = 1 + int(8); k > 0; k--) b[int(b.length)] ^= 1 << int(8);
  if (kind === 'truncate') return { bytes: b.subarray(0, int(b.length)), how: 'truncated' };
  if (kind === 'chunk') { const at = int(b.length); for (let i = at; i < Math.min(b.length, at + 1 + int(64)); i++) b[i] = int(256); }
  if (kind === 'insert') { const at = int(b.length); return { bytes: Buffer.concat([b.subarray(0, at), Buffer.from(Array.from({ length: 1 + int(16) }, () => int(256))), b.subarray(at)]), how: 'inserted bytes' }; }
  if (kind === 'delete') { const at = int(b.length); return { bytes: Buffer.concat([b.subarray(0, at), b.subarray(at + 1 + int(32))]), how: 'deleted bytes' }; }
  if (kind === 'duplicate') { const at = int(b.length); const n = 1 + int(128); return { bytes: Buffer.concat([b.subarray(0, at + n), b.subarray(at, at + n), b.subarray(at + n)]), how: 'duplicated bytes' }; }
  return { bytes: b, how: kind };
}

/** Structured edits of an ONNX model that keep it decodable but make it wrong. */
const ONNX_EDITS = {
  'dim to 0': (m) => { m.graph.input[0].type.tensorType.shape.dim[int(m.graph.input[0].type.tensorType.shape.dim.length)] = { dimValue: 0 }; },
  'huge dim': (m) => { m.graph.input[0].type.tensorType.shape.dim[0] = { dimValue: 2 ** 40 }; },
  'initializer dtype': (m) => { const t = pick(m.graph.initializer); t.dataType = pick([2, 3, 6, 7, 9, 10, 11, 16, 99]); },
  'initializer dims': (m) => { const t = pick(m.graph.initializer); t.dims = t.dims.map((d) => d + 1 + int(3)); },
  'raw data cut': (m) => { const t = pick(m.graph.initializer); if (t.rawData) t.rawData = t.rawData.subarray(0, int(t.rawData.length)); },
  'drop initializer': (m) => { m.graph.initializer.splice(int(m.graph.initializer.length), 1); },
  'dangling input': (m) => { const n = pick(m.graph.node); n.input[int(n.input.length)] = 'nowhere'; },
  'cycle': (m) => { const n = m.graph.node[0]; n.input[0] = m.graph.node[m.graph.node.length - 1].output[0]; },
  'unknown op': (m) => { pick(m.graph.node).opType = pick(['FancyOp', 'Conv', 'Gemm', '']); },
  'opset': (m) => { m.opsetImport[0].version = pick([1, 5, 99, 0]); },
  'no outputs': (m) => { m.graph.output = []; },
  'duplicate output': (m) => { if (m.graph.node.length > 1) m.graph.node[1].output = [...m.graph.node[0].output]; },
  'input dtype': (m) => { m.graph.input[0].type.tensorType.elemType = pick([0, 2, 7, 9, 13, 100]); },
  'external escapes': (m) => { const t = pick(m.graph.initializer); delete t.rawData; t.dataLocation = 1; t.externalData = [{ key: 'location', value: pick(['../outside/secret.bin', '/etc/passwd', 'missing.bin', 'link.bin', 'pipe.bin']) }]; },
  'external offset': (m) => { const t = pick(m.graph.initializer); delete t.rawData; t.dataLocation = 1; t.externalData = [{ key: 'location', value: 'data.bin' }, { key: 'offset', value: pick(['-1', 'abc', '99999999', '1e300']) }, { key: 'length', value: pick(['12', '-5', 'x']) }]; },
  'attribute type': (m) => { const n = pick(m.graph.node); n.attribute.push({ name: pick(['kernel_shape', 'strides', 'pads', 'group', 'axis']), type: pick([1, 2, 3, 7]), ints: [int(5) - 2], i: int(5) - 2 }); },
  'rename graph input': (m) => { m.graph.input[0].name = 'renamed'; },
};

function mutateOnnx(seedBytes, dir) {
  // Side files a mutated model may name: real data, a symlink out, a FIFO.
  writeFileSync(join(dir, 'data.bin'), Buffer.alloc(64, 1));
  symlinkSync(join(outside, 'secret.bin'), join(dir, 'link.bin'));
  if (haveMkfifo) spawnSync('mkfifo', [join(dir, 'pipe.bin')]);
  if (rnd() < 0.45) {
    const { bytes, how } = mutateBytes(seedBytes);
    writeFileSync(join(dir, 'model.onnx'), bytes);
    return `bytes: ${how}`;
  }
  const m = onnx.decodeModel(seedBytes);
  const edits = Object.keys(ONNX_EDITS);
  const chosen = [pick(edits), ...(rnd() < 0.3 ? [pick(edits)] : [])];
  for (const e of chosen) {
    try {
      ONNX_EDITS[e](m);
    } catch {
      /* an edit that does not apply to this model leaves it as it is */
    }
  }
  let bytes;
  try {
    bytes = onnx.encodeModel(m);
  } catch {
    bytes = mutateBytes(seedBytes).bytes;
  }
  writeFileSync(join(dir, 'model.onnx'), bytes);
  return `fields: ${chosen.join(', ')}`;
}

function mutateTfjs(dir) {
  cpSync(MNIST_TFJS, dir, { recursive: true });
  const jsonPath = join(dir, 'model.json');
  const shard = join(dir, 'group1-shard1of1.bin');
  const json = JSON.parse(readFileSync(jsonPath, 'utf8'));
  const kind = pick(['json-bytes', 'shard-bytes', 'shard-truncate', 'shard-missing', 'shard-path', 'shard-link', 'shard-fifo', 'weight-shape', 'weight-dtype', 'manifest', 'topology', 'layer-config']);
  const group = json.weightsManifest[0];
  switch (kind) {
    case 'json-bytes': writeFileSync(jsonPath, mutateBytes(readFileSync(jsonPath)).bytes); return kind;
    case 'shard-bytes': writeFileSync(shard, mutateBytes(readFileSync(shard)).bytes); return kind;
    case 'shard-truncate': writeFileSync(shard, readFileSync(shard).subarray(0, int(readFileSync(shard).length))); return kind;
    case 'shard-missing': rmSync(shard); return kind;
    case 'shard-path': group.paths[0] = pick(['../outside/secret.bin', '/etc/passwd', 'nope.bin', '', 42, null]); break;
    case 'shard-link': rmSync(shard); symlinkSync(join(outside, 'secret.bin'), shard); return kind;
    case 'shard-fifo': rmSync(shard); if (haveMkfifo) spawnSync('mkfifo', [shard]); return kind;
    case 'weight-shape': { const w = pick(group.weights); w.shape = w.shape.map((d) => pick([d + 1, 0, -1, d * 2, 2 ** 31])); break; }
    case 'weight-dtype': pick(group.weights).dtype = pick(['int32', 'float16', 'string', 'bool', 'complex64', 'x']); break;
    case 'manifest': json.weightsManifest = pick([[], null, {}, [{ weights: [] }], [{ paths: 'x', weights: [] }]]); break;
    case 'topology': json.modelTopology = pick([null, {}, { class_name: 'Sequential', config: null }, { class_name: 'Nope' }, 'text']); break;
    case 'layer-config': {
      const layers = json.modelTopology?.model_config?.config?.layers ?? json.modelTopology?.config?.layers;
      if (Array.isArray(layers) && layers.length) {
        const l = pick(layers);
        const edit = pick(['class', 'units', 'kernel', 'activation', 'null']);
        if (edit === 'class') l.class_name = pick(['LSTM', 'Conv3D', 'Nope', 'Lambda']);
        if (edit === 'units' && l.config) l.config.units = pick([0, -1, 1e9, 'x']);
        if (edit === 'kernel' && l.config) l.config.kernel_size = pick([[0, 0], [99, 99], 'x', null]);
        if (edit === 'activation' && l.config) l.config.activation = pick(['gelu_new', 'nope', null]);
        if (edit === 'null') l.config = null;
      }
      break;
    }
  }
  writeFileSync(jsonPath, JSON.stringify(json));
  return kind;
}

/** A 28×28 grey PNG, made once before the cases so case generation stays synchronous (and so seeded). */
let PNG;

/** A dataset for the MNIST CNN ([batch,1,28,28]); returns its path and what was done to it. */
function mutateDataset(dir) {
  const kind = pick(['npy-header', 'npy-bytes', 'npy-folder', 'npz', 'npz-bytes', 'image-bytes', 'image-folder', 'image-fifo', 'image-link', 'class-link', 'npy-fifo']);
  const good = core.encodeNpy([4, 1, 28, 28], Float32Array.from({ length: 4 * 784 }, () => rnd()));
  const data = join(dir, 'data');
  mkdirSync(data);
  const png = PNG;
  switch (kind) {
    case 'npy-header': {
      const header = pick([
        "{'descr': '<f8', 'fortran_order': False, 'shape': (4, 1, 28, 28), }",
        "{'descr': '<c8', 'fortran_order': False, 'shape': (4, 1, 28, 28), }",
        "{'descr': '<f4', 'fortran_order': True, 'shape': (4, 1, 28, 28), }",
        "{'descr': '<f4', 'fortran_order': False, 'shape': (-4, 1, 28, 28), }",
        "{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999, 1, 28, 28), }",
        "{'descr': '<f4', 'fortran_order': False, 'shape': (4, 1, 28, 28, }",
        "{'descr': '|O', 'fortran_order': False, 'shape': (4,), }",
        "not a dict at all",
        "{'descr': '<f4', 'fortran_order': False, 'shape': (), }",
        "{'descr': '<f4', 'fortran_order': False, 'shape': (4, 1, 28, 27), }",
      ]);
      const h = Buffer.from(header.padEnd(118, ' ') + '\n');
      const head = Buffer.concat([Buffer.from([0x93]), Buffer.from('NUMPY'), Buffer.from([pick([1, 2, 3, 9]), 0]), Buffer.from([h.length & 0xff, h.length >> 8]), h]);
      writeFileSync(join(data, 'a.npy'), Buffer.concat([head, good.subarray(128, 128 + int(4 * 784 * 4))]));
      break;
    }
    case 'npy-bytes': writeFileSync(join(data, 'a.npy'), mutateBytes(good).bytes); break;
    case 'npy-folder': writeFileSync(join(data, 'a.npy'), good); writeFileSync(join(data, 'b.npy'), core.encodeNpy([pick([1, 3]), pick([1, 2]), pick([28, 14]), 28], new Float32Array(3 * 2 * 28 * 28).fill(NaN).subarray(0, 0))); break;
    case 'npz': writeFileSync(join(data, 'a.npz'), core.encodeNpz({ [pick(['input', 'x', 'wrong'])]: { dims: [pick([1, 2]), 1, 28, pick([28, 14])], dtype: 'float32', data: new Float32Array(2 * 28 * 28) } })); break;
    case 'npz-bytes': writeFileSync(join(data, 'a.npz'), mutateBytes(core.encodeNpz({ input: { dims: [1, 1, 28, 28], dtype: 'float32', data: new Float32Array(784) } })).bytes); break;
    case 'image-bytes': writeFileSync(join(data, 'a.png'), png); writeFileSync(join(data, 'b.png'), mutateBytes(png).bytes); break;
    case 'image-folder': writeFileSync(join(data, 'a.png'), png); writeFileSync(join(data, 'b.jpg'), Buffer.alloc(int(3))); break;
    case 'image-fifo': writeFileSync(join(data, 'a.png'), png); if (haveMkfifo) spawnSync('mkfifo', [join(data, 'b.png')]); break;
    case 'image-link': writeFileSync(join(data, 'a.png'), png); symlinkSync(join(outside, 'secret.bin'), join(data, 'b.png')); break;
    case 'class-link': mkdirSync(join(data, 'cat')); writeFileSync(join(data, 'cat', 'a.png'), png); mkdirSync(join(outside, `dog${int(1e9)}`)); writeFileSync(join(outside, 'dog.png'), png); symlinkSync(outside, join(data, 'dog')); break;
    case 'npy-fifo': if (haveMkfifo) spawnSync('mkfifo', [join(data, 'a.npy')]); else writeFileSync(join(data, 'a.npy'), good); break;
  }
  return { data: pick([data, data, readdirSync(data).length ? join(data, readdirSync(data)[0]) : data]), how: kind };
}

// ---- cases -------------------------------------------------------------------------------------
function makeCase(index) {
  const dir = join(work, `case-${index}`);
  mkdirSync(dir);
  const runs = join(dir, 'runs');
  const family = pick(['onnx', 'onnx', 'onnx', 'tiny', 'tfjs', 'tfjs', 'data', 'data']);
  const common = ['--runs-dir', runs, '--json'];
  const quick = ['--samples', '2', '--no-benchmark'];
  if (family === 'onnx' || family === 'tiny') {
    const how = mutateOnnx(family === 'onnx' ? mnistBytes : tinyBytes, dir);
    const model = join(dir, 'model.onnx');
    const verb = pick(['inspect', 'quantize', 'quantize', 'verify']);
    if (verb === 'inspect') return { index, dir, family, how, output: undefined, argv: ['inspect', model, '--json'] };
    if (verb === 'verify') return { index, dir, family, how, output: undefined, argv: ['verify', family === 'onnx' ? MNIST_ONNX : model, model, '--data', 'random', '--samples', '2', '--json'] };
    const output = join(dir, 'out.int8.onnx');
    return { index, dir, family, how, output, argv: ['quantize', model, '--data', 'random', ...quick, '--eval-samples', '2', '-o', output, ...common] };
  }
  if (family === 'tfjs') {
    const how = mutateTfjs(dir);
    const model = join(dir, 'model.json');
    const verb = pick(['inspect', 'quantize']);
    if (verb === 'inspect') return { index, dir, family, how, output: undefined, argv: ['inspect', model, '--json'] };
    const output = join(dir, 'out.tflite');
    return { index, dir, family, how, output, argv: ['quantize', model, '--data', 'random', ...quick, '--eval-samples', '2', '-o', output, ...common] };
  }
  const { data, how } = mutateDataset(dir);
  const verb = pick(['quantize', 'verify']);
  if (verb === 'verify') return { index, dir, family, how, output: undefined, argv: ['verify', MNIST_ONNX, MNIST_ONNX, '--data', data, '--samples', '4', '--json'] };
  const output = join(dir, 'out.int8.onnx');
  return { index, dir, family, how, output, argv: ['quantize', MNIST_ONNX, '--data', data, '--samples', '4', '--no-benchmark', '--eval-data', data, '--eval-samples', '2', '-o', output, ...common] };
}

function runCase(c) {
  return new Promise((done) => {
    const started = Date.now();
    const child = spawn(process.execPath, [BIN, ...c.argv], { cwd: c.dir, env: { ...process.env, XDG_DATA_HOME: join(c.dir, 'xdg'), FORCE_COLOR: '0' }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => { if (stdout.length < 1 << 20) stdout += d; });
    child.stderr.on('data', (d) => { if (stderr.length < 1 << 16) stderr += d; });
    let hung = false;
    const timer = setTimeout(() => { hung = true; child.kill('SIGKILL'); }, TIMEOUT_MS);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      done({ ...c, code, signal, hung, ms: Date.now() - started, stdout, stderr });
    });
  });
}

/** Files a finished case left that it should not have: .partial work folders, temporary files, an -o after a failure. */
function leftovers(r) {
  const found = [];
  const walk = (d, depth) => {
    let entries = [];
    try {
      entries = readdirSync(d, { withFileTypes: true });
    } catch {
      return;
    }
    for (const e of entries) {
      const p = join(d, e.name);
      if (/\.partial$/.test(e.name) || /\.tmp$/.test(e.name)) found.push(p);
      if (e.isDirectory() && depth < 3 && e.name !== 'xdg') walk(p, depth + 1);
    }
  };
  walk(r.dir, 0);
  if (r.code === 2 && r.output && existsSync(r.output)) found.push(`${r.output} (written although the run failed)`);
  return found;
}

function classify(r) {
  if (r.hung) return { outcome: 'hang' };
  if (r.signal) return { outcome: 'crash', detail: `signal ${r.signal}` };
  if (![0, 1, 2].includes(r.code)) return { outcome: 'crash', detail: `exit ${r.code}` };
  const left = leftovers(r);
  if (left.length) return { outcome: 'leftover', detail: left.join(', ') };
  if (r.code !== 2) return { outcome: r.code === 0 ? 'ok' : 'verdict-fail' };
  let error;
  try {
    error = JSON.parse(r.stdout).error;
  } catch {
    error = undefined;
  }
  if (!error?.code) return { outcome: 'uncoded', detail: `no JSON error on stdout; stderr: ${r.stderr.slice(0, 300)}` };
  if (!(error.code in core.ErrorCodes) || (error.hint ?? '').includes(FALLBACK_HINT)) return { outcome: 'uncoded', detail: `${error.code}: ${String(error.message).slice(0, 300)}` };
  return { outcome: 'coded', code: error.code };
}

async function main() {
  const sharp = require(require.resolve('sharp', { paths: [join(ROOT, 'packages', 'core')] }));
  PNG = await sharp(Buffer.from(Array.from({ length: 28 * 28 }, (_, i) => (i * 37) % 256)), { raw: { width: 28, height: 28, channels: 1 } }).png().toBuffer();
  const deadline = Date.now() + BUDGET_MS;
  const results = [];
  let next = 0;
  const worker = async () => {
    while (next < CASES && Date.now() < deadline) {
      const index = next++;
      const c = makeCase(index);
      const r = await runCase(c);
      const verdict = classify(r);
      results.push({ index, family: c.family, how: c.how, argv: c.argv.map((a) => a.replace(work, '$WORK')), code: r.code, ms: r.ms, ...verdict });
      if (!['ok', 'verdict-fail', 'coded'].includes(verdict.outcome)) console.error(`case ${index} [${c.family}: ${c.how}] ${verdict.outcome}: ${verdict.detail ?? ''}\n  qforge ${c.argv.join(' ')}`);
      else rmSync(c.dir, { recursive: true, force: true });
      if (results.length % 50 === 0) console.error(`${results.length} cases…`);
    }
  };
  // Cases are generated in order from one PRNG, so the same seed makes the same cases (worker
  // interleaving only changes which case runs on which worker).
  await Promise.all(Array.from({ length: JOBS }, worker));
  results.sort((a, b) => a.index - b.index);
  const count = (f) => results.filter(f).length;
  const byOutcome = {};
  const byCode = {};
  const byFamily = {};
  for (const r of results) {
    byOutcome[r.outcome] = (byOutcome[r.outcome] ?? 0) + 1;
    if (r.code) byCode[r.code] = (byCode[r.code] ?? 0) + 1;
    byFamily[r.family] = (byFamily[r.family] ?? 0) + 1;
  }
  const problems = results.filter((r) => !['ok', 'verdict-fail', 'coded'].includes(r.outcome));
  const summary = {
    seed: SEED,
    cases: results.length,
    budgetSeconds: BUDGET_MS / 1000,
    timeoutSeconds: TIMEOUT_MS / 1000,
    byFamily,
    byOutcome,
    errorCodes: Object.fromEntries(Object.entries(results.reduce((acc, r) => (r.outcome === 'coded' ? { ...acc, [r.code]: (acc[r.code] ?? 0) + 1 } : acc), {})).sort()),
    crashes: count((r) => r.outcome === 'crash'),
    hangs: count((r) => r.outcome === 'hang'),
    uncoded: count((r) => r.outcome === 'uncoded'),
    leftovers: count((r) => r.outcome === 'leftover'),
    medianCaseMs: results.map((r) => r.ms).sort((a, b) => a - b)[Math.floor(results.length / 2)],
    problems,
  };
  const outDir = join(ROOT, 'out', 'fuzz');
  mkdirSync(outDir, { recursive: true });
  writeFileSync(join(outDir, `fuzz-${SEED}.json`), JSON.stringify({ ...summary, results }, null, 2));
  console.log(JSON.stringify({ ...summary, problems: problems.length }, null, 2));
  if (!problems.length) rmSync(work, { recursive: true, force: true });
  else console.error(`problem cases kept in ${work}`);
  process.exit(problems.length ? 1 : 0);
}

main().catch((e) => {
  console.error(e);
  process.exit(3);
});
