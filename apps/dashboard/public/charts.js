// Chart helpers shared by the dashboard and the self-contained report.html (Chart.js is global).
(function (global) {
  const FP32 = '#8896a8';
  const INT8 = '#1f7a5c';

  /** Counts per bin over [lo, hi]; samples outside are not counted (the caller says how many). */
  function histogram(samples, lo, hi, bins) {
    const counts = new Array(bins).fill(0);
    const w = (hi - lo) / bins || 1;
    for (const s of samples) if (s >= lo && s <= hi) counts[Math.min(bins - 1, Math.floor((s - lo) / w))]++;
    return counts;
  }

  /** Nearest-rank percentile, as in @qforge/core's bench-stats. */
  function percentile(sorted, p) {
    return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))];
  }

  function speedupText(b) {
    const f = (x) => Number(x).toFixed(2);
    const s = b.speedupEstimate;
    if (!s) return b.speedup ? `${f(b.speedup)}×` : '';
    return `${f(s.median)}× (${Math.round(Number(s.confidence) * 100)}% CI ${f(s.low)}–${f(s.high)})${b.crossRuntime ? ', cross-runtime' : ''}`;
  }

  /**
   * Latency distributions of fp32 and int8 from one alternating benchmark run. The axis stops at
   * the 99th percentile: a single stall would otherwise crush every other run into one bar.
   */
  function latencyChart(canvas, report) {
    const b = report.benchmark;
    if (!b) return null;
    const series = [{ label: 'int8', s: b.primary.latencyMs.samples, color: INT8 }];
    if (b.compare) series.unshift({ label: 'fp32', s: b.compare.latencyMs.samples, color: FP32 });
    const all = series.flatMap((x) => x.s).sort((x, y) => x - y);
    const lo = all[0];
    const hi = percentile(all, 99);
    const clipped = all.filter((x) => x > hi).length;
    const bins = 30;
    const labels = Array.from({ length: bins }, (_, i) => (lo + ((i + 0.5) * (hi - lo)) / bins).toFixed(3));
    const title = [`Latency distribution (ms per inference)${b.compare ? `, speedup ${speedupText(b)} from medians` : ''}`, `clipped at p99 = ${hi.toFixed(3)} ms: ${clipped} slower run(s) of ${all.length} not shown`];
    return new Chart(canvas, {
      type: 'bar',
      data: { labels, datasets: series.map((x) => ({ label: x.label, data: histogram(x.s, lo, hi, bins), backgroundColor: x.color })) },
      options: { animation: false, plugins: { title: { display: true, text: title } }, scales: { x: { title: { display: true, text: 'ms (up to p99)' } }, y: { title: { display: true, text: 'runs' } } } },
    });
  }

  /** Error at each quantized tensor, worst first: the layers to try keeping in float. */
  function layersChart(canvas, report) {
    const layers = (report.verify && report.verify.layers) || [];
    if (!layers.length) return null;
    const shown = layers.slice(0, 40);
    return new Chart(canvas, {
      type: 'bar',
      data: { labels: shown.map((l) => l.tensor), datasets: [{ label: 'SNR (dB)', data: shown.map((l) => l.snrDb), backgroundColor: shown.map((l) => (l.snrDb < 20 ? '#c0392b' : l.snrDb < 30 ? '#d98e04' : INT8)) }] },
      options: { animation: false, indexAxis: 'y', plugins: { title: { display: true, text: 'Per-layer SNR, worst first (red < 20 dB)' } }, scales: { x: { title: { display: true, text: 'dB' } } } },
    });
  }

  /** `qforge sensitivity`: what keeping each node in float recovers, most first. */
  function sensitivityChart(canvas, report) {
    const s = report.sensitivity;
    if (!s || !s.layers.length) return null;
    const shown = s.layers.slice(0, 40);
    return new Chart(canvas, {
      type: 'bar',
      data: { labels: shown.map((l) => l.node), datasets: [{ label: `recovery when kept in float (${s.metric})`, data: shown.map((l) => l.recovery), backgroundColor: INT8 }] },
      options: { animation: false, indexAxis: 'y', plugins: { title: { display: true, text: `Per-node sensitivity (${s.metric}), most sensitive first` } } },
    });
  }

  /** A weight distribution recorded in the report (equal-width bins over [min, max]). */
  function weightChart(canvas, h) {
    const w = (h.max - h.min) / h.bins.length;
    return new Chart(canvas, {
      type: 'bar',
      data: { labels: h.bins.map((_, i) => (h.min + (i + 0.5) * w).toPrecision(3)), datasets: [{ label: `weights of ${h.tensor}`, data: h.bins, backgroundColor: INT8 }] },
      options: { animation: false, plugins: { title: { display: true, text: `Weight distribution of ${h.tensor}` } }, scales: { y: { title: { display: true, text: 'count' } } } },
    });
  }

  /** Calibration range of one tensor (observed min/max and the range used), or a weight histogram. */
  function rangeChart(canvas, table, tensor, report) {
    const weights = report && report.quantization ? report.quantization.decisions.map((d) => d.weightHistogram).filter(Boolean) : [];
    const wh = weights.find((h) => `weight: ${h.tensor}` === tensor);
    if (wh) return weightChart(canvas, wh);
    const t = table && table.tensors[tensor];
    if (!t) return null;
    if (t.histogram) {
      const n = t.histogram.bins.length;
      const w = (2 * t.histogram.limit) / n;
      const pts = t.histogram.bins.map((c, i) => ({ x: -t.histogram.limit + (i + 0.5) * w, y: c })).filter((p) => p.y > 0);
      return new Chart(canvas, { type: 'line', data: { datasets: [{ label: tensor, data: pts, borderColor: INT8, pointRadius: 0 }] }, options: { animation: false, parsing: false, scales: { x: { type: 'linear' } } } });
    }
    return new Chart(canvas, {
      type: 'bar',
      data: { labels: ['observed min', 'observed max', 'range low', 'range high'], datasets: [{ label: tensor, data: [t.min, t.max, t.range[0], t.range[1]], backgroundColor: [FP32, FP32, INT8, INT8] }] },
      options: { animation: false, plugins: { title: { display: true, text: `Activation range of ${tensor}` } } },
    });
  }


  /**
   * The metric that decides each output (the task metric of docs/verification.md), first output
   * first: `{ output, kind, label, value, reference, unit, text }`. Older reports have none.
   */
  function taskMetrics(report) {
    const v = report && report.verify;
    if (!v) return [];
    const p = (x) => (x == null ? null : Number(x) * 100);
    return v.outputs.filter((o) => o.task).map((o, k) => {
      const t = o.task;
      const base = { output: o.output, kind: t.kind, detectedFrom: t.detectedFrom };
      if (t.kind === 'classes' && k === 0 && v.accuracy) return { ...base, label: 'top-1 accuracy', value: p(v.accuracy.candidate), reference: p(v.accuracy.reference), unit: '%' };
      if (t.kind === 'classes') return { ...base, label: 'top-1 agreement', value: p(t.top1Agreement), unit: '%' };
      if (t.kind === 'map') return { ...base, label: `map IoU @ ${t.threshold}`, value: t.iou, unit: '', extra: `pixel agreement ${(t.pixelAgreement * 100).toFixed(2)}%` };
      if (t.kind === 'sequence' && t.lineAccuracy) return { ...base, label: 'line accuracy', value: p(t.lineAccuracy.candidate), reference: p(t.lineAccuracy.reference), unit: '%', extra: `characters ${(t.charAccuracy.reference * 100).toFixed(1)}% → ${(t.charAccuracy.candidate * 100).toFixed(1)}%` };
      if (t.kind === 'sequence' && t.lineAgreement != null) return { ...base, label: 'decoded lines equal', value: p(t.lineAgreement), unit: '%' };
      if (t.kind === 'sequence') return { ...base, label: 'position agreement', value: p(t.positionAgreement), unit: '%' };
      return { ...base, label: 'relative error', value: t.relativeError, unit: '' };
    });
  }

  /**
   * One small chart per metric over several runs (task metrics first, then SNR, size, speed). Each
   * axis spans the values shown, not zero: the differences between runs are the point.
   */
  function compareCharts(container, reports, labels) {
    const metrics = new Map();
    const add = (key, title, unit, i, value) => {
      if (value == null || !Number.isFinite(Number(value))) return;
      if (!metrics.has(key)) metrics.set(key, { title, unit, values: new Array(reports.length).fill(null) });
      metrics.get(key).values[i] = Number(value);
    };
    reports.forEach((r, i) => {
      for (const m of taskMetrics(r)) add(`task:${m.output}:${m.label}`, `${m.output}: ${m.label}`, m.unit, i, m.value);
    });
    reports.forEach((r, i) => {
      const o = r.verify && r.verify.outputs[0];
      if (o) add('snr', `SNR of ${o.output}${o.preActivation ? ` (before ${o.preActivation.op})` : ''}`, 'dB', i, o.preActivation ? o.preActivation.snrDb : o.snrDb);
      if (r.sizes) add('size', 'size int8 / fp32', '×', i, r.sizes.ratio);
      if (r.benchmark && r.benchmark.speedup) add('speedup', 'speedup (ratio of medians)', '×', i, r.benchmark.speedup);
    });
    const made = [];
    for (const [key, m] of metrics) {
      const shown = m.values.filter((x) => x != null);
      const lo = Math.min(...shown);
      const hi = Math.max(...shown);
      const pad = (hi - lo) * 0.15 || Math.abs(hi) * 0.01 || 0.01;
      const box = document.createElement('div');
      box.className = 'chart small';
      box.dataset.metric = key;
      const canvas = document.createElement('canvas');
      box.appendChild(canvas);
      container.appendChild(box);
      made.push(new Chart(canvas, {
        type: 'bar',
        data: { labels, datasets: [{ label: `${m.title}${m.unit ? ` (${m.unit})` : ''}`, data: m.values, backgroundColor: key.startsWith('task:') ? INT8 : FP32 }] },
        options: {
          animation: false,
          plugins: { legend: { display: false }, title: { display: true, text: [`${m.title}${m.unit ? ` (${m.unit})` : ''}`, `axis ${(lo - pad).toPrecision(4)}–${(hi + pad).toPrecision(4)}, not from zero`] } },
          scales: { y: { min: lo - pad, max: hi + pad } },
        },
      }));
    }
    return made;
  }

  /** The tensors a range chart can show: calibrated activations, then quantized weights. */
  function rangeChoices(table, report) {
    const acts = table ? Object.keys(table.tensors) : [];
    const weights = report && report.quantization ? report.quantization.decisions.map((d) => d.weightHistogram).filter(Boolean).map((h) => `weight: ${h.tensor}`) : [];
    return [...acts, ...weights];
  }

  global.QforgeCharts = { speedupText, latencyChart, layersChart, sensitivityChart, rangeChart, rangeChoices, compareCharts, taskMetrics };
})(typeof window !== 'undefined' ? window : globalThis);
