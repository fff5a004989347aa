// @qforge/dashboard: the local web app over run directories, and report.html.
export { CSP, isLoopbackHost, startDashboard } from './server';
export type { Dashboard, DashboardOptions } from './server';
export { MAX_REPORT_BYTES, RunStore, openRunFile, summarize } from './runs';
export type { RunSummary } from './runs';
export { JobQueue } from './jobs';
export { queueTrialSource, redactCredentials, trialsFromRunsFolder } from './queued';
export type { QueueListing, QueuedTrial, QueuedTrialSource, QueuedTrialState, QueuedTrialsView } from './queued';
export { childRunLauncher, serveRunInChild } from './child-run';
export type { ChildRunFunction, ChildRunLauncherOptions } from './child-run';
export type { Job, JobEvent, JobQueueOptions, RunLauncher, StartRunRequest } from './jobs';
export { renderReportHtml, writeReportHtml } from './report-html';
