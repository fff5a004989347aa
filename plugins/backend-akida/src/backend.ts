// The Akida adapter: finds the BrainChip SDK through the configured Python and reports what is usable.
import { SdkAdapterBackend, defineCapabilities, runProbe, type BackendCapabilities, type Detection } from '@qforge/core';

// eslint-disable-next-line @typescript-eslint/no-require-imports
const PACKAGE = require('../package.json') as { name: string; version: string };

const INSTALL = 'Install the Akida SDK into the Python qforge uses: `pip install akida cnn2snn quantizeml` (set QFORGE_PYTHON to pick the interpreter).';

/** Imports each SDK module and lists devices; prints one JSON line whatever happens. */
export const AKIDA_PROBE = `
import json, importlib
out = {"modules": {}, "errors": {}, "devices": []}
for name in ("akida", "cnn2snn", "quantizeml"):
    try:
        m = importlib.import_module(name)
        out["modules"][name] = str(getattr(m, "__version__", "unknown"))
    except Exception as e:
        out["errors"][name] = "%s: %s" % (type(e).__name__, e)
if "akida" in out["modules"]:
    try:
        import akida
        out["devices"] = [str(d.desc) if hasattr(d, "desc") else str(d) for d in akida.devices()]
    except Exception as e:
        out["errors"]["devices"] = "%s: %s" % (type(e).__name__, e)
print(json.dumps(out))
`;

export const AKIDA_CAPABILITIES: BackendCapabilities = defineCapabilities({
  targets: ['akida'],
  notes: [
    'detects the Akida SDK (akida, cnn2snn, quantizeml) in QFORGE_PYTHON and lists Akida devices',
    'quantization for Akida is done by the vendor SDK on Keras models; this adapter runs no verbs yet and says so with E_UNSUPPORTED (E_SDK_MISSING when the SDK is absent)',
  ],
});

export class AkidaBackend extends SdkAdapterBackend {
  readonly id = 'akida';
  readonly displayName = 'BrainChip Akida';
  readonly packageName = PACKAGE.name;
  readonly version = PACKAGE.version;
  readonly capabilities = AKIDA_CAPABILITIES;
  protected readonly sdk = { name: 'the Akida Python SDK (akida, cnn2snn)', install: INSTALL };

  constructor(private readonly env: NodeJS.ProcessEnv = process.env, private readonly timeoutMs = 15000) {
    super();
  }

  protected async probe(): Promise<Detection> {
    const python = this.env.QFORGE_PYTHON || 'python3';
    const r = await runProbe(python, ['-c', AKIDA_PROBE], { timeoutMs: this.timeoutMs, env: this.env });
    if (r.spawnError) return { available: false, reason: `Python "${python}" cannot be run (${r.spawnError})`, hint: `Install Python 3 or set QFORGE_PYTHON. ${INSTALL}` };
    if (r.timedOut) return { available: false, reason: `probing the Akida SDK with ${python} timed out after ${this.timeoutMs} ms`, hint: INSTALL };
    let parsed: { modules: Record<string, string>; errors: Record<string, string>; devices: string[] };
    try {
      parsed = JSON.parse(r.stdout.trim().split('\n').pop() ?? '');
    } catch {
      return { available: false, reason: `the probe printed no result (exit ${r.exitCode}): ${r.stderr.trim().split('\n').pop() ?? ''}`, hint: INSTALL };
    }
    const missing = ['akida', 'cnn2snn'].filter((m) => !(m in parsed.modules));
    const details = { python, modules: parsed.modules, errors: parsed.errors, devices: parsed.devices };
    if (missing.length) {
      return { available: false, reason: `Python module(s) ${missing.join(', ')} not importable by ${python} (${missing.map((m) => parsed.errors[m]).join('; ')})`, hint: INSTALL, details };
    }
    return {
      available: true,
      version: parsed.modules.akida,
      runtime: `akida ${parsed.modules.akida}, cnn2snn ${parsed.modules.cnn2snn}${parsed.modules.quantizeml ? `, quantizeml ${parsed.modules.quantizeml}` : ''}`,
      reason: parsed.devices.length ? undefined : 'no Akida device is visible (software simulation only)',
      details,
    };
  }
}
