// The TVM adapter: finds `tvmc` on PATH or the `tvm` Python package and reports its version.
import { SdkAdapterBackend, defineCapabilities, runProbe, type BackendCapabilities, type Detection } from '@qforge/core';

// eslint-disable-next-line @typescript-eslint/no-require-imports
const PACKAGE = require('../package.json') as { name: string; version: string };

const INSTALL = 'Install Apache TVM so that `tvmc` is on PATH or `import tvm` works in QFORGE_PYTHON (e.g. `pip install apache-tvm`).';

export const TVM_PROBE = `
import json
try:
    import tvm
    print(json.dumps({"version": str(tvm.__version__), "path": str(getattr(tvm, "__file__", ""))}))
except Exception as e:
    print(json.dumps({"error": "%s: %s" % (type(e).__name__, e)}))
`;

export const TVM_CAPABILITIES: BackendCapabilities = defineCapabilities({
  targets: ['tvm-llvm'],
  notes: [
    'detects `tvmc` on PATH (its --version) or the tvm Python package in QFORGE_PYTHON',
    'compiling and benchmarking through tvmc is not implemented yet: verbs fail with E_UNSUPPORTED (E_SDK_MISSING when TVM is absent)',
  ],
});

export class TvmBackend extends SdkAdapterBackend {
  readonly id = 'tvm';
  readonly displayName = 'Apache TVM';
  readonly packageName = PACKAGE.name;
  readonly version = PACKAGE.version;
  readonly capabilities = TVM_CAPABILITIES;
  protected readonly sdk = { name: 'Apache TVM (tvmc or the tvm Python package)', install: INSTALL };

  constructor(private readonly env: NodeJS.ProcessEnv = process.env, private readonly timeoutMs = 15000) {
    super();
  }

  protected async probe(): Promise<Detection> {
    const reasons: string[] = [];
    const cli = await runProbe('tvmc', ['--version'], { timeoutMs: this.timeoutMs, env: this.env });
    if (cli.ok) {
      const version = (cli.stdout.trim() || cli.stderr.trim()).split('\n').pop()?.trim();
      return { available: true, version, runtime: `tvmc ${version}`, details: { via: 'tvmc' } };
    }
    reasons.push(cli.spawnError ? '`tvmc` is not on PATH' : cli.timedOut ? '`tvmc --version` timed out' : `\`tvmc --version\` exited ${cli.exitCode}`);
    const python = this.env.QFORGE_PYTHON || 'python3';
    const py = await runProbe(python, ['-c', TVM_PROBE], { timeoutMs: this.timeoutMs, env: this.env });
    if (py.spawnError) reasons.push(`Python "${python}" cannot be run`);
    else if (py.timedOut) reasons.push(`importing tvm with ${python} timed out`);
    else {
      try {
        const r = JSON.parse(py.stdout.trim().split('\n').pop() ?? '') as { version?: string; error?: string; path?: string };
        if (r.version) return { available: true, version: r.version, runtime: `tvm ${r.version} (Python)`, details: { via: 'python', python, path: r.path } };
        reasons.push(`tvm is not importable by ${python} (${r.error})`);
      } catch {
        reasons.push(`the tvm probe printed no result (exit ${py.exitCode})`);
      }
    }
    return { available: false, reason: reasons.join('; '), hint: INSTALL };
  }
}
