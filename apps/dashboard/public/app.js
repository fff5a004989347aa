// The dashboard app: runs list, run page, comparison and starting runs. Hash routes, no build step.
(function () {
  const view = document.getElementById('view');
  const charts = [];
  // The per-launch token arrives in the URL the server printed; it is kept for this tab and taken
  // out of the address bar (and so out of history and screenshots).
  const params = new URLSearchParams(location.search);
  if (params.has('token')) {
    sessionStorage.setItem('qforge-token', params.get('token'));
    history.replaceState(null, '', location.pathname + location.hash);
  }
  const token = sessionStorage.getItem('qforge-token') || '';
  const api = async (path, init) => {
    const res = await fetch(path, init && init.method && init.method !== 'GET' ? { ...init, headers: { ...(init.headers || {}), 'x-qforge-token': token } } : init);
    const body = await res.json().catch(() => ({}));
    if (!res.ok) throw Object.assign(new Error((body.error && body.error.message) || res.statusText), { status: res.status, body });
    return body;
  };
  // The one escape for every value put into markup: reports are files anyone could have written.
  const esc = (s) => String(s == null ? '' : s).replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]);
  const num = (x, d = 2) => (x == null || !Number.isFinite(Number(x)) ? '—' : Number(x).toFixed(d));
  // A speedup is a ratio of medians; its 95% interval, when the report has one, is printed with it.
  const speedupCell = (r) => `${num(r.speedup)}×${r.speedupLow != null ? ` [${num(r.speedupLow)}–${num(r.speedupHigh)}]` : ''}${r.crossRuntime ? ' cross-runtime' : ''}`;
  const kib = (b) => (b == null || !Number.isFinite(Number(b)) ? '—' : `${(Number(b) / 1024).toFixed(1)} KiB`);
  const pct = (x) => (x == null || !Number.isFinite(Number(x)) ? '—' : `${(Number(x) * 100).toFixed(2)}%`);
  const clearCharts = () => { while (charts.length) { const c = charts.pop(); if (c) c.destroy(); } };
  const selected = new Set();

  // Few, narrow columns so the list fits the window: each run is named by its model and the options
  // that tell it apart; long errors are cut (the whole text is in the tooltip and on the run page).
  const columns = [
    ['run', 'label'], ['backend · target', 'backend'], ['samples', 'samples'],
    ['size', 'sizeRatio'], ['latency fp32 → int8', 'speedup'], ['SNR', 'snrDb'], ['accuracy', 'accuracyInt8'], ['verdict', 'verdict'], ['time', 'createdAt'],
  ];
  let sortKey = 'createdAt';
  let sortDir = -1;
  let filter = '';

  async function runsPage() {
    const { runs, runsDir } = await api('/api/runs');
    document.getElementById('runs-dir').textContent = runsDir;
    const shown = runs
      .filter((r) => !filter || JSON.stringify(r).toLowerCase().includes(filter.toLowerCase()))
      .sort((a, b) => ((a[sortKey] ?? '') > (b[sortKey] ?? '') ? 1 : (a[sortKey] ?? '') < (b[sortKey] ?? '') ? -1 : 0) * sortDir);
    view.innerHTML = `
      <div class="toolbar"><input id="filter" placeholder="filter runs…" value="${esc(filter)}" aria-label="filter">
      <button id="compare-btn" ${selected.size < 2 ? 'disabled' : ''}>Compare selected (${selected.size})</button>
      <span class="muted">${runs.length} runs</span></div>
      <div class="table-wrap"><table id="runs"><thead><tr><th></th>${columns.map(([t, k]) => `<th data-key="${k}">${t}${sortKey === k ? (sortDir > 0 ? ' ▲' : ' ▼') : ''}</th>`).join('')}</tr></thead>
      <tbody>${shown.map((r) => r.damaged
        ? `<tr class="damaged" data-id="${esc(r.id)}"><td></td><td colspan="${columns.length}"><span class="trunc wide" title="${esc(r.problem)}">${esc(r.id)} — damaged: ${esc(r.problem)}</span></td></tr>`
        : `<tr data-id="${esc(r.id)}"><td>${r.mode === 'sensitivity' ? '' : `<input type="checkbox" class="pick" value="${esc(r.id)}" ${selected.has(r.id) ? 'checked' : ''} aria-label="select ${esc(r.id)}">`}</td>
          <td class="run-name"><a href="#/run/${encodeURIComponent(r.id)}" title="${esc(r.id)}">${esc(r.label || r.model)}</a><br><span class="muted">${esc([r.mode, r.method].filter(Boolean).join(' · '))}</span></td>
          <td>${esc(r.backend)}<br><span class="muted">${esc(r.target)}</span></td><td class="num"><span class="trunc narrow" title="${esc(r.samples ?? '')}">${esc(r.samples ?? '—')}</span></td>
          <td class="num">${num(r.sizeRatio)}×<br><span class="muted">${kib(r.fp32Bytes)} → ${kib(r.int8Bytes)}</span></td>
          <td class="num">${speedupCell(r)}<br><span class="muted">${num(r.fp32Ms, 3)} → ${num(r.int8Ms, 3)} ms</span></td>
          <td class="num">${num(r.snrDb, 1)} dB</td><td class="num">${r.accuracyInt8 != null ? `${pct(r.accuracyFp32)} →<br>${pct(r.accuracyInt8)}` : '—'}</td>
          <td class="verdict-${esc(r.verdict)}">${esc(r.verdict)}${r.error ? `<br><span class="muted trunc" title="${esc(r.error)}">${esc(r.error)}</span>` : ''}</td><td class="num">${esc((r.createdAt || '').slice(0, 10))}<br><span class="muted">${esc((r.createdAt || '').slice(11, 19))}</span></td></tr>`).join('')}</tbody></table></div>`;
    view.querySelectorAll('th[data-key]').forEach((th) => th.addEventListener('click', () => {
      const k = th.dataset.key;
      sortDir = sortKey === k ? -sortDir : 1;
      sortKey = k;
      runsPage();
    }));
    const f = document.getElementById('filter');
    f.addEventListener('input', () => { filter = f.value; runsPage().then(() => { const g = document.getElementById('filter'); g.focus(); g.setSelectionRange(filter.length, filter.length); }); });
    view.querySelectorAll('input.pick').forEach((c) => c.addEventListener('change', () => { c.checked ? selected.add(c.value) : selected.delete(c.value); runsPage(); }));
    document.getElementById('compare-btn').addEventListener('click', () => { location.hash = `#/compare?ids=${[...selected].map(encodeURIComponent).join(',')}`; });
  }

  async function runPage(id) {
    let report;
    try {
      report = await api(`/api/runs/${encodeURIComponent(id)}`);
    } catch (e) {
      view.innerHTML = `<h2>${esc(id)}</h2><p class="error">This run cannot be shown: ${esc(e.message)}</p>`;
      return;
    }
    let table = null;
    if (report.calibrationTable) table = await fetch(`/api/runs/${encodeURIComponent(id)}/files/calibration.json`).then((r) => (r.ok ? r.json() : null));
    const o = report.verify && report.verify.outputs[0];
    const files = ['report.json', 'summary.txt', report.calibrationTable ? 'calibration.json' : null, report.sensitivity ? null : 'report.html', report.output ? report.output.path.split('/').pop() : null].filter(Boolean);
    const tensors = QforgeCharts.rangeChoices(table, report);
    view.innerHTML = `
      <h2>${esc(report.input.path.split('/').pop())} <span class="verdict-${esc(report.verdict)}">${esc(report.verdict.toUpperCase())}</span></h2>
      <p class="muted">${esc(report.runId)} · ${esc(report.command)} · ${esc(report.createdAt)}</p>
      ${report.error ? `<p class="error">${esc(report.error.code)}: ${esc(report.error.message)}\nhint: ${esc(report.error.hint || '')}</p>` : ''}
      <div class="cards">
        ${QforgeCharts.taskMetrics(report).map((m) => `<div class="card task" title="${esc(m.kind)}: ${esc(m.detectedFrom)}">${esc(m.output)}: ${esc(m.label)}<b>${m.unit === '%' ? `${num(m.value)}%` : num(m.value, 3)}</b><span class="muted">${m.reference != null ? `fp32 ${num(m.reference)}${esc(m.unit)}` : esc(m.kind)}${m.extra ? ` · ${esc(m.extra)}` : ''}</span></div>`).join('')}
        <div class="card">size<b>${report.sizes ? `${num(report.sizes.ratio)}×` : '—'}</b><span class="muted">${report.sizes ? `${kib(report.sizes.inputBytes)} → ${kib(report.sizes.outputBytes)}` : ''}</span></div>
        <div class="card">speedup<b>${report.benchmark && report.benchmark.speedup ? esc(QforgeCharts.speedupText(report.benchmark)) : '—'}</b><span class="muted">${report.benchmark && report.benchmark.compare ? `median ${num(report.benchmark.compare.latencyMs.p50, 3)} → ${num(report.benchmark.primary.latencyMs.p50, 3)} ms` : ''}</span></div>
        <div class="card">output SNR<b>${o ? `${num(o.snrDb, 1)} dB` : '—'}</b><span class="muted">${o && o.preActivation ? `before ${esc(o.preActivation.op)}: ${num(o.preActivation.snrDb, 1)} dB` : ''}</span></div>
        <div class="card">accuracy<b>${report.verify && report.verify.accuracy ? pct(report.verify.accuracy.candidate) : '—'}</b><span class="muted">${report.verify && report.verify.accuracy ? `fp32 ${pct(report.verify.accuracy.reference)}, drop ${num(report.verify.accuracy.dropPoints)} pts` : ''}</span></div>
      </div>
      <p>${report.verdictReasons.map(esc).join('; ')}</p>
      ${report.search ? `<h3>${report.search.trigger === 'verdict' ? 'Search after the default recipe failed' : 'Accuracy-aware search'}: ${esc(report.search.target)} ${report.search.met ? 'met' : 'NOT met'}</h3>
        <table id="search"><thead><tr><th>step</th><th>method</th><th>samples</th><th>nodes in float</th><th>score</th><th>met</th></tr></thead><tbody>
        ${report.search.path.map((s) => `<tr><td>${esc(s.step)}</td><td>${esc(s.method)}</td><td>${esc(s.samples)}</td><td>${esc(s.floatNodes.join(', ') || '—')}</td><td>${num(s.score, 3)}</td><td>${s.met ? 'yes' : 'no'}</td></tr>`).join('')}</tbody></table>` : ''}
      ${report.sensitivity ? `<h3>Sensitivity: ${esc(report.sensitivity.metric)}, all quantized ${num(report.sensitivity.baseline, 2)}${report.sensitivity.rankAgreement !== undefined ? `, rank agreement ${num(report.sensitivity.rankAgreement)}` : ''}</h3>
        <div class="chart"><canvas id="sensitivity" height="${Math.max(120, Math.min(40, report.sensitivity.layers.length) * 18)}"></canvas></div>
        <table id="sensitivity-table"><thead><tr><th>node</th><th>all but this</th><th>recovery</th><th>only this</th></tr></thead><tbody>
        ${report.sensitivity.layers.map((l) => `<tr><td>${esc(l.node)}</td><td>${num(l.allButThis, 3)}</td><td>${num(l.recovery, 3)}</td><td>${l.onlyThis === null ? '—' : num(l.onlyThis, 3)}</td></tr>`).join('')}</tbody></table>` : ''}
      ${report.benchmark ? '<div class="chart"><canvas id="latency"></canvas></div>' : ''}
      <div class="chart"${report.verify && report.verify.layers && report.verify.layers.length ? '' : ' hidden'}><canvas id="layers" height="${Math.max(120, Math.min(40, ((report.verify && report.verify.layers) || []).length) * 18)}"></canvas></div>
      ${tensors.length ? `<div class="chart"><label>Tensor <select id="tensor">${tensors.map((t) => `<option>${esc(t)}</option>`).join('')}</select></label><canvas id="ranges"></canvas></div>` : ''}
      <h3>Artifacts</h3><ul id="artifacts">${files.map((f) => `<li><a href="/api/runs/${encodeURIComponent(id)}/files/${encodeURIComponent(f)}">${esc(f)}</a></li>`).join('')}</ul>
      <h3>Options and versions</h3><pre id="options">${esc(JSON.stringify({ options: report.options, tool: report.tool, backend: report.backend, target: report.target, input: report.input, output: report.output }, null, 2))}</pre>`;
    if (report.sensitivity) charts.push(QforgeCharts.sensitivityChart(document.getElementById('sensitivity'), report));
    if (report.benchmark) charts.push(QforgeCharts.latencyChart(document.getElementById('latency'), report));
    charts.push(QforgeCharts.layersChart(document.getElementById('layers'), report));
    if (tensors.length) {
      const sel = document.getElementById('tensor');
      let rc = QforgeCharts.rangeChart(document.getElementById('ranges'), table, sel.value, report);
      sel.addEventListener('change', () => { if (rc) rc.destroy(); rc = QforgeCharts.rangeChart(document.getElementById('ranges'), table, sel.value, report); charts.push(rc); });
      charts.push(rc);
    }
  }

  async function comparePage(ids) {
    const { runs } = await api('/api/runs');
    const picked = ids.length ? runs.filter((r) => ids.includes(r.id)) : runs.filter((r) => !r.damaged && r.mode !== 'sensitivity').slice(0, 8);
    // Whole reports: the task metrics and the evaluation data live there, not in the list summary.
    const reports = await Promise.all(picked.map((r) => api(`/api/runs/${encodeURIComponent(r.id)}`).catch(() => null)));
    const rows = picked.map((r, i) => ({ ...r, report: reports[i], label: `${r.method || r.mode}/${r.samples ?? '—'} ${r.id.slice(9, 15)}` })).filter((r) => r.report);
    // Numbers measured on different data do not compare: say so before showing them side by side.
    const evalKey = (rep) => (rep.evalDataset ? `${rep.evalDataset.source} ${JSON.stringify(rep.evalDataset.inputShapes || {})} ×${rep.evalDataset.samplesUsed}` : 'not verified');
    const evals = [...new Set(rows.map((r) => evalKey(r.report)))];
    const taskCell = (rep) => QforgeCharts.taskMetrics(rep).map((m) => `${esc(m.label)} ${m.unit === '%' ? `${num(m.value)}%` : num(m.value, 3)}`).join('<br>') || '—';
    view.innerHTML = `<h2>Compare ${rows.length} runs</h2>
      ${evals.length > 1 ? `<p class="warning" id="compare-warning">These runs were evaluated on different data, so their accuracy and fidelity numbers do not compare directly: ${evals.map(esc).join(' · ')}</p>` : ''}
      <div class="charts-grid" id="compare-charts"></div>
      <table id="compare-table"><thead><tr><th>run</th><th>model</th><th>method</th><th>samples</th><th>task metric</th><th>eval data</th><th>SNR</th><th>size</th><th>speedup</th><th>verdict</th></tr></thead><tbody>
      ${rows.map((r) => `<tr><td><a href="#/run/${encodeURIComponent(r.id)}">${esc(r.id)}</a></td><td>${esc(r.model)}</td><td>${esc(r.method)}</td><td>${esc(r.samples ?? '—')}</td><td>${taskCell(r.report)}</td><td>${esc(evalKey(r.report))}</td><td>${num(r.snrDb, 1)} dB</td><td>${num(r.sizeRatio)}×</td><td>${speedupCell(r)}</td><td class="verdict-${esc(r.verdict)}">${esc(r.verdict)}</td></tr>`).join('')}</tbody></table>`;
    charts.push(...QforgeCharts.compareCharts(document.getElementById('compare-charts'), rows.map((r) => r.report), rows.map((r) => r.label)));
  }

  async function startPage() {
    const c = await api('/api/choices');
    const opts = (xs) => xs.map((x) => `<option>${esc(x)}</option>`).join('');
    view.innerHTML = `<h2>Start a run</h2>
      ${c.canStart ? '' : '<p class="error">This dashboard was started without permission to run quantization.</p>'}
      <p class="muted">Models and datasets are read only from: ${c.allowed.map(esc).join(', ') || 'nowhere (start with --allow DIR)'}</p>
      <form class="start" id="start-form">
        <label for="model">model</label><select id="model" name="model">${opts(c.models)}</select>
        <label for="data">calibration data</label><select id="data" name="data">${opts(c.datasets)}</select>
        <label for="evalData">evaluation data</label><select id="evalData" name="evalData">${opts(['mnist:test', ...c.datasets.filter((d) => d !== 'mnist:test')])}</select>
        <label for="backend">backend</label><select id="backend" name="backend">${opts(c.backends)}</select>
        <label for="target">target</label><select id="target" name="target">${opts(c.targets)}</select>
        <label for="mode">mode</label><select id="mode" name="mode">${opts(['static', 'dynamic', 'weight-only'])}</select>
        <label for="method">method</label><select id="method" name="method">${opts(['auto', 'minmax', 'percentile', 'entropy', 'mse'])}</select>
        <label for="samples">samples</label><input id="samples" name="samples" type="number" min="1" value="256">
        <label for="evalSamples">evaluation samples</label><input id="evalSamples" name="evalSamples" type="number" min="1" value="200">
        <fieldset class="data-options"><legend>Data options (as the CLI's flags; empty = from the model)</legend>
          <label for="inputShape">input shape</label><input id="inputShape" name="inputShape" placeholder="1,3,224,224 or input:1,3,224,224 (; between inputs)">
          <label for="imageSize">image size</label><input id="imageSize" name="imageSize" placeholder="224x224" pattern="[0-9]+x[0-9]+">
          <label for="layout">layout</label><select id="layout" name="layout">${opts(['', 'NCHW', 'NHWC'])}</select>
          <label for="mean">mean</label><input id="mean" name="mean" placeholder="0.485,0.456,0.406">
          <label for="std">std</label><input id="std" name="std" placeholder="0.229,0.224,0.225">
          <label for="resize">resize</label><select id="resize" name="resize">${opts(['', 'cover', 'contain', 'fill', 'pad'])}</select>
        </fieldset>
        <span></span><button type="submit" ${c.canStart ? '' : 'disabled'}>Start</button>
      </form>
      <div id="job" hidden><p id="phase">starting…</p><progress id="progress" max="1" value="0"></progress><p id="job-result"></p></div>`;
    document.getElementById('start-form').addEventListener('submit', async (ev) => {
      ev.preventDefault();
      const f = new FormData(ev.target);
      const body = Object.fromEntries(f.entries());
      body.samples = Number(body.samples);
      body.evalSamples = Number(body.evalSamples);
      // Empty data options mean "from the model": they are left out, as an unset flag would be.
      for (const k of ['inputShape', 'imageSize', 'layout', 'mean', 'std', 'resize']) if (!String(body[k] ?? '').trim()) delete body[k];
      if (body.inputShape) body.inputShape = body.inputShape.split(';').map((x) => x.trim()).filter(Boolean);
      const job = document.getElementById('job');
      const result = document.getElementById('job-result');
      job.hidden = false;
      result.textContent = '';
      let started;
      try {
        started = await api('/api/runs', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
      } catch (e) {
        result.innerHTML = `<span class="error">${esc(e.message)}</span>`;
        return;
      }
      if (started.position > 0) document.getElementById('phase').textContent = `queued (${started.position} ahead)`;
      const es = new EventSource(started.events);
      es.addEventListener('queued', (m) => { document.getElementById('phase').textContent = `queued (${JSON.parse(m.data).position} ahead)`; });
      es.addEventListener('progress', (m) => {
        const p = JSON.parse(m.data).progress;
        document.getElementById('phase').textContent = `${p.phase}${p.total ? ` ${p.current}/${p.total}` : ''}${p.message ? ` — ${p.message}` : ''}`;
        const bar = document.getElementById('progress');
        if (p.total) { bar.max = p.total; bar.value = p.current; } else bar.removeAttribute('value');
      });
      es.addEventListener('done', (m) => { es.close(); const id = JSON.parse(m.data).runId; document.getElementById('phase').textContent = 'done'; result.innerHTML = `Finished: <a id="new-run" href="#/run/${encodeURIComponent(id)}">${esc(id)}</a>`; });
      es.addEventListener('failed', (m) => { es.close(); const e = JSON.parse(m.data).error; document.getElementById('phase').textContent = 'failed'; result.innerHTML = `<span class="error">${esc(e.code)}: ${esc(e.message)}${e.hint ? `\nhint: ${esc(e.hint)}` : ''}</span>`; });
    });
  }

  // Queued trials: the page reads them again every 2 s while it is open.
  let trialsTimer;
  async function trialsPage() {
    const render = async () => {
      let t;
      try {
        t = await api('/api/trials');
      } catch (e) {
        view.innerHTML = `<h2>Queued trials</h2><p class="error" id="trials-error">${esc(e.message)}</p>`;
        return;
      }
      const when = (r) => (r.finishedAt || r.startedAt || r.queuedAt || '').slice(11, 19);
      const progress = (r) => (r.phase ? `${esc(r.phase)}${r.total ? ` ${esc(r.current)}/${esc(r.total)}` : ''}` : '—');
      const result = (r) => (r.runId ? `<a href="#/run/${encodeURIComponent(r.runId)}">${esc(r.runId)}</a>` : r.error ? `<span class="error trunc wide" title="${esc(r.error)}">${esc(r.error)}</span>` : '');
      view.innerHTML = `<h2>Queued trials</h2>
        <p class="muted" id="trials-source">${t.source === 'queue' ? `queue ${esc(t.queue)} · ${esc(t.workers)} worker(s) connected` : 'read from the runs folder'}${t.note ? ` — ${esc(t.note)}` : ''}</p>
        <p id="trial-counts">${['waiting', 'running', 'completed', 'failed'].map((s) => `<span class="trial-${s}" data-state="${s}">${s} ${esc((t.counts || {})[s] ?? 0)}</span>`).join(' · ')}</p>
        <div class="table-wrap"><table id="trials"><thead><tr><th>state</th><th>trial</th><th>worker</th><th>progress</th><th>attempts</th><th>time</th><th>result</th></tr></thead><tbody>
        ${t.trials.map((r) => `<tr data-id="${esc(r.id)}" data-state="${esc(r.state)}"><td class="trial-state trial-${esc(r.state)}">${esc(r.state)}</td><td>${esc(r.label)}</td><td>${esc(r.worker || '—')}</td><td>${progress(r)}</td><td class="num">${esc(r.attempts ?? '—')}</td><td class="num">${esc(when(r))}</td><td>${result(r)}</td></tr>`).join('')}</tbody></table></div>`;
    };
    await render();
    trialsTimer = setInterval(() => { if ((location.hash || '').startsWith('#/trials')) render(); }, 2000);
  }

  async function route() {
    clearCharts();
    clearInterval(trialsTimer);
    const hash = location.hash || '#/';
    const [path, query] = hash.slice(1).split('?');
    document.querySelectorAll('nav a').forEach((a) => a.classList.toggle('active', path.startsWith(`/${a.dataset.nav}`) || (path === '/' && a.dataset.nav === 'runs')));
    try {
      if (path.startsWith('/run/')) await runPage(decodeURIComponent(path.slice(5)));
      else if (path.startsWith('/compare')) await comparePage(new URLSearchParams(query).get('ids')?.split(',').filter(Boolean).map(decodeURIComponent) ?? []);
      else if (path.startsWith('/start')) await startPage();
      else if (path.startsWith('/trials')) await trialsPage();
      else await runsPage();
      document.body.dataset.ready = path;
    } catch (e) {
      view.innerHTML = `<p class="error">${esc(e.message)}</p>`;
    }
  }
  window.addEventListener('hashchange', route);
  route();
})();
