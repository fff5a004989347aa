#!/usr/bin/env node
// Independent check: runs fp32 and int8 PaddleOCR models in onnxruntime-node directly (no qforge code)
// and measures the task: detector map IoU + per-line recall against the drawn boxes, recognizer line
// accuracy against labels, classifier accuracy against labels.
// Usage: node tools/outside/ocr-task.js <rec|cls|det> <fp32.onnx> <int8.onnx> <dataDir from tools/render-text.js> [charset]
const fs = require('fs');
const path = require('path');
const ort = require('onnxruntime-node');
const sharp = require('sharp');
const [kind, fp32, int8, dir, charsetFile] = process.argv.slice(2);
const files = fs.readdirSync(dir).filter((f) => f.endsWith('.png')).sort();

async function load(file, W, H, mean, std, pad) {
  const img = sharp(path.join(dir, file)).removeAlpha().resize(W, H, { fit: pad ? 'inside' : 'cover' });
  const { data, info } = await img.raw().toBuffer({ resolveWithObject: true });
  const x = new Float32Array(3 * W * H);
  for (let y = 0; y < info.height; y++) for (let c = 0; c < 3; c++) for (let w = 0; w < info.width; w++) x[c * W * H + y * W + w] = (data[(y * info.width + w) * 3 + c] / 255 - mean[c]) / std[c];
  return new ort.Tensor('float32', x, [1, 3, H, W]);
}
async function run(s, t) { const o = await s.run({ [s.inputNames[0]]: t }); return o[s.outputNames[0]]; }

(async () => {
  const [a, b] = [await ort.InferenceSession.create(fp32), await ort.InferenceSession.create(int8)];
  if (kind === 'det') {
    const boxes = JSON.parse(fs.readFileSync(path.join(dir, 'boxes.json'), 'utf8'));
    for (const thr of [0.5, 0.3]) {
      let inter = 0, uni = 0; const recall = [0, 0]; let lines = 0; const outside = [0, 0];
      for (const f of files) {
        const t = await load(f, 640, 640, [0.485, 0.456, 0.406], [0.229, 0.224, 0.225], false);
        const [ra, rb] = [(await run(a, t)).data, (await run(b, t)).data];
        for (let i = 0; i < ra.length; i++) { const p = ra[i] > thr, q = rb[i] > thr; if (p && q) inter++; if (p || q) uni++; }
        const page = boxes.find((x) => x.file === f);
        const inBox = new Uint8Array(640 * 640);
        for (const l of page.lines) {
          lines++;
          const [x0, y0, x1, y1] = l.box;
          // A line counts as found when ≥ 50% of its box's middle band is on.
          const ym0 = Math.round(y0 + (y1 - y0) * 0.3), ym1 = Math.round(y0 + (y1 - y0) * 0.7);
          [ra, rb].forEach((m, k) => { let on = 0, n = 0; for (let y = ym0; y < ym1; y++) for (let x = x0; x < Math.min(640, x1); x++) { n++; if (m[y * 640 + x] > thr) on++; } if (on / n >= 0.5) recall[k]++; });
          for (let y = Math.max(0, y0 - 10); y < Math.min(640, y1 + 10); y++) for (let x = Math.max(0, x0 - 10); x < Math.min(640, x1 + 10); x++) inBox[y * 640 + x] = 1;
        }
        [ra, rb].forEach((m, k) => { for (let i = 0; i < m.length; i++) if (m[i] > thr && !inBox[i]) outside[k]++; });
      }
      console.log(`det threshold ${thr}: map IoU fp32 vs int8 ${(inter / uni).toFixed(3)}; lines found fp32 ${recall[0]}/${lines}, int8 ${recall[1]}/${lines}; "on" pixels outside every box fp32 ${outside[0]}, int8 ${outside[1]}`);
    }
  } else if (kind === 'rec') {
    const labels = fs.readFileSync(path.join(dir, 'labels.txt'), 'utf8').split('\n').filter((l, i, arr) => i < arr.length - 1 || l !== '');
    const chars = fs.readFileSync(charsetFile, 'utf8').split('\n').map((l) => l.replace(/\r$/, '')); if (chars[chars.length - 1] === '') chars.pop();
    const dict = ['<blank>', ...chars, ' '];
    const decode = (o) => { const [, T, C] = o.dims; let s = '', prev = -1; for (let t = 0; t < T; t++) { let k = 0; for (let c = 1; c < C; c++) if (o.data[t * C + c] > o.data[t * C + k]) k = c; if (k !== prev && k !== 0) s += dict[k]; prev = k; } return s; };
    // Levenshtein distance, for character accuracy (PaddleOCR's norm_edit_dis).
    const edit = (x, y) => { let prev = Array.from({ length: y.length + 1 }, (_, j) => j); for (let i = 1; i <= x.length; i++) { const cur = [i]; for (let j = 1; j <= y.length; j++) cur[j] = Math.min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (x[i - 1] === y[j - 1] ? 0 : 1)); prev = cur; } return prev[y.length]; };
    const noSpace = (s) => s.replace(/ /g, '');
    const right = [0, 0]; const rightNs = [0, 0]; const charAcc = [0, 0]; let same = 0;
    for (const [i, f] of files.entries()) {
      const t = await load(f, 320, 48, [0.5, 0.5, 0.5], [0.5, 0.5, 0.5], true);
      const [sa, sb] = [decode(await run(a, t)), decode(await run(b, t))];
      if (sa === labels[i]) right[0]++; if (sb === labels[i]) right[1]++; if (sa === sb) same++;
      [sa, sb].forEach((s, k) => { if (noSpace(s) === noSpace(labels[i])) rightNs[k]++; charAcc[k] += 1 - edit(s, labels[i]) / Math.max(s.length, labels[i].length, 1); });
    }
    const pct = (x) => `${(100 * x / files.length).toFixed(1)}%`;
    console.log(`rec: line accuracy fp32 ${pct(right[0])}, int8 ${pct(right[1])} (${files.length} lines); decoded equal ${pct(same)}`);
    console.log(`rec: line accuracy ignoring spaces (PaddleOCR RecMetric's default) fp32 ${pct(rightNs[0])}, int8 ${pct(rightNs[1])}; character accuracy fp32 ${pct(charAcc[0])}, int8 ${pct(charAcc[1])}`);
  } else {
    const labels = JSON.parse(fs.readFileSync(path.join(dir, 'labels.json'), 'utf8'));
    const right = [0, 0]; let same = 0;
    for (const [i, f] of files.entries()) {
      const t = await load(f, 192, 48, [0.5, 0.5, 0.5], [0.5, 0.5, 0.5], true);
      const am = (o) => (o.data[1] > o.data[0] ? 1 : 0);
      const [pa, pb] = [am(await run(a, t)), am(await run(b, t))];
      if (pa === labels[i]) right[0]++; if (pb === labels[i]) right[1]++; if (pa === pb) same++;
    }
    console.log(`cls: accuracy fp32 ${(100 * right[0] / files.length).toFixed(2)}%, int8 ${(100 * right[1] / files.length).toFixed(2)}%; same decision ${same}/${files.length}`);
  }
})();
