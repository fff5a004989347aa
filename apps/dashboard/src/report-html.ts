// report.html: one run as a self-contained page (Chart.js and the data inlined), readable offline.
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describeTaskMetric, formatRunSummary, writeFileAtomic, type CalibrationTable, type RunReport } from '@qforge/core';

// The built app (dist/public), found the same way from src/ (tests) and dist/.
const PUBLIC = join(__dirname, '..', 'dist', 'public');

/** `</script>` inside inlined data would end the script early. */
function safeJson(value: unknown): string {
  return JSON.stringify(value).replace(/</g, '\\u003c');
}

function esc(s: string): string {
  return s.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);
}

/** What each output means and the metric that judged it, ahead of everything else. */
function taskTable(report: RunReport): string {
  const outs = (report.verify?.outputs ?? []).filter((o) => o.task);
  if (!outs.length) return '';
  return `<table id="task"><thead><tr><th>output</th><th>read as</th><th>task metric</th><th>SNR</th></tr></thead><tbody>${outs
    .map((o) => `<tr><td>${esc(o.output)}</td><td>${esc(o.task!.kind)} <span class="muted">(${esc(o.task!.detectedFrom)})</span></td><td>${esc(describeTaskMetric(o.task!))}</td><td>${o.snrDb.toFixed(1)} dB</td></tr>`)
    .join('')}</tbody></table>
<p>${report.verdictReasons.map(esc).join('; ')}</p>`;
}

export function renderReportHtml(report: RunReport, table?: CalibrationTable): string {
  const chartJs = readFileSync(join(PUBLIC, 'vendor', 'chart.umd.min.js'), 'utf8');
  const charts = readFileSync(join(PUBLIC, 'charts.js'), 'utf8');
  const css = readFileSync(join(PUBLIC, 'style.css'), 'utf8');
  const tensors = [...(table ? Object.keys(table.tensors) : []), ...(report.quantization?.decisions ?? []).flatMap((d) => (d.weightHistogram ? [`weight: ${d.weightHistogram.tensor}`] : []))];
  const model = report.input.path.split(/[\\/]/).pop() ?? report.input.path;
  // Sections of steps that did not run (--no-benchmark, --no-verify, no per-layer error) are left
  // out rather than drawn as empty chart boxes.
  const hasLatency = Boolean(report.benchmark);
  const hasLayers = Boolean(report.verify?.layers?.length);
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>${esc(model)} · ${esc(report.verdict)} · qforge run ${esc(report.runId)}</title>
<style>${css}</style>
<script>${chartJs}</script>
<script>${charts}</script>
</head><body><main>
<h1>${esc(model)} <span class="verdict-${esc(report.verdict)}">${esc(report.verdict.toUpperCase())}</span></h1>
<p class="muted">qforge run ${esc(report.runId)} · ${esc(report.command ?? '')}</p>
${taskTable(report)}
<pre id="summary">${esc(formatRunSummary(report))}</pre>
${hasLatency ? '<div class="chart"><canvas id="latency"></canvas></div>' : ''}
${hasLayers ? '<div class="chart"><canvas id="layers"></canvas></div>' : ''}
${tensors.length ? `<div class="chart"><label>Tensor <select id="tensor">${tensors.map((t) => `<option>${esc(t)}</option>`).join('')}</select></label><canvas id="ranges"></canvas></div>` : ''}
<h3>Options and versions</h3><pre>${esc(JSON.stringify({ options: report.options, tool: report.tool, backend: report.backend, target: report.target, input: report.input, output: report.output }, null, 2))}</pre>
</main>
<script>
const report = ${safeJson(report)};
const table = ${safeJson(table ?? null)};
window.qforgeCharts = [];
if (document.getElementById('latency')) window.qforgeCharts.push(QforgeCharts.latencyChart(document.getElementById('latency'), report));
if (document.getElementById('layers')) window.qforgeCharts.push(QforgeCharts.layersChart(document.getElementById('layers'), report));
const sel = document.getElementById('tensor');
if (sel) {
  let rc = QforgeCharts.rangeChart(document.getElementById('ranges'), table, sel.value, report);
  window.qforgeCharts.push(rc);
  sel.addEventListener('change', () => { if (rc) rc.destroy(); rc = QforgeCharts.rangeChart(document.getElementById('ranges'), table, sel.value, report); });
}
document.body.dataset.ready = 'report';
</script>
</body></html>
`;
}

/** Writes report.html into a finished run folder (atomically). */
export async function writeReportHtml(runDir: string, report: RunReport): Promise<string> {
  const tablePath = join(runDir, 'calibration.json');
  const table = existsSync(tablePath) ? (JSON.parse(readFileSync(tablePath, 'utf8')) as CalibrationTable) : undefined;
  const out = join(runDir, 'report.html');
  await writeFileAtomic(out, renderReportHtml(report, table));
  return out;
}
