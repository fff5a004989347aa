// @qforge/dashboard: the local web app over run directories, and report.html.
export { startDashboard } from './server';
export type { Dashboard, DashboardOptions } from './server';
export { RunStore, summarize } from './runs';
export type { RunSummary } from './runs';
export type { RunLauncher, StartRunRequest } from './jobs';
export { renderReportHtml, writeReportHtml } from './report-html';
