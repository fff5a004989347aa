// Copies the static app and Chart.js's UMD build into dist/public (served by the dashboard, inlined in report.html).
const { cpSync, mkdirSync } = require('node:fs');
const { dirname, join } = require('node:path');
const out = join(__dirname, '..', 'dist', 'public');
mkdirSync(join(out, 'vendor'), { recursive: true });
cpSync(join(__dirname, '..', 'public'), out, { recursive: true });
cpSync(join(dirname(require.resolve('chart.js')), 'chart.umd.min.js'), join(out, 'vendor', 'chart.umd.min.js'));
