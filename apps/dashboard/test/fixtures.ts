// Run folders for dashboard tests, written by hand so each field can be made hostile.

/** A schema-valid report; `extra` overrides fields. */
export function fakeReport(runId: string, extra: Record<string, unknown> = {}): string {
  return JSON.stringify({
    kind: 'qforge.run-report',
    schemaVersion: 1,
    runId,
    command: 'quantize',
    createdAt: '2026-01-01T00:00:00.000Z',
    status: 'succeeded',
    tool: { qforge: '0.1.0', node: process.version },
    backend: { id: 'onnxruntime', version: '0.1.0' },
    target: { id: 'x86-avx2' },
    input: { path: '/models/m.onnx', sizeBytes: 100, sha256: 'a'.repeat(64) },
    options: { mode: 'static' },
    verdict: 'unverified',
    verdictReasons: [],
    ...extra,
  });
}
