// A quantize run as the CLI and the dashboard start it: the core pipeline, then report.html.
import { runQuantize, type Backend, type QuantizeRunOptions, type QuantizeRunResult, type RunContext, type RunReport } from '@qforge/core';
import { writeReportHtml } from '@qforge/dashboard';

export async function runAndRender(backend: Backend, options: QuantizeRunOptions, ctx: RunContext): Promise<QuantizeRunResult> {
  try {
    const result = await runQuantize(backend, options, ctx);
    await writeReportHtml(result.runDir, result.report);
    return result;
  } catch (e) {
    // A failed run still gets its page (it shows the coded error).
    const failed = e as { runDir?: string; report?: RunReport };
    if (failed.runDir && failed.report) await writeReportHtml(failed.runDir, failed.report).catch(() => undefined);
    throw e;
  }
}
