// The dashboard server: the app, a JSON API over the runs folder, and runs started from the page.
import { randomBytes, timingSafeEqual } from 'node:crypto';
import { closeSync, createReadStream, existsSync, readdirSync, readFileSync, realpathSync, statSync } from 'node:fs';
import { isIP, type AddressInfo } from 'node:net';
import { extname, join, resolve } from 'node:path';
import Fastify, { type FastifyInstance } from 'fastify';
import { DEFAULT_CALIBRATION_SAMPLES, TARGET_PROFILES, errInvalidOption, isInsideFolder } from '@qforge/core';
import { JobQueue, type JobEvent, type RunLauncher, type StartRunRequest } from './jobs';
import { redactCredentials, trialsFromRunsFolder, type QueuedTrialSource } from './queued';
import { RunStore } from './runs';

export interface DashboardOptions {
  runsDir: string;
  /** Folders models and datasets may be read from when starting runs. */
  allow?: string[];
  /** @defaultValue '127.0.0.1' */
  host?: string;
  /** @defaultValue 0 (any free port) */
  port?: number;
  /**
   * Starts runs; without it, POST /api/runs answers 501. Use {@link childRunLauncher}, so a run that
   * crashes cannot take the server down; `close()` cancels (kills) runs in progress.
   */
  launch?: RunLauncher;
  backends?: string[];
  /** Binding to an address other than loopback needs this: the page can start runs. @defaultValue false */
  unsafeExpose?: boolean;
  /** The per-launch secret state-changing requests must carry. @defaultValue random, 32 bytes */
  token?: string;
  /** Runs started from the page that may wait behind the running one; more are refused (429). @defaultValue 8 */
  maxQueuedRuns?: number;
  /**
   * Where GET /api/trials reads queued trials (`queueTrialSource` over a Redis queue).
   * @defaultValue what the runs folder shows of them (`trialsFromRunsFolder`)
   */
  trials?: (store: RunStore) => QueuedTrialSource;
}

export interface Dashboard {
  /** The server's address (API base). */
  url: string;
  /** The address to open: carries the per-launch token the page needs to start runs. */
  openUrl: string;
  token: string;
  app: FastifyInstance;
  /** Cancels queued and running runs (and waits until they have stopped), then stops serving. */
  close(): Promise<void>;
}

// The built app (dist/public), found the same way from src/ (tests) and dist/.
const PUBLIC = join(__dirname, '..', 'dist', 'public');
const STATIC: Record<string, string> = {
  '/': 'index.html',
  '/app.js': 'app.js',
  '/charts.js': 'charts.js',
  '/style.css': 'style.css',
  '/vendor/chart.umd.min.js': 'vendor/chart.umd.min.js',
};
const TYPES: Record<string, string> = { '.html': 'text/html; charset=utf-8', '.js': 'text/javascript; charset=utf-8', '.css': 'text/css; charset=utf-8', '.json': 'application/json; charset=utf-8', '.txt': 'text/plain; charset=utf-8', '.onnx': 'application/octet-stream', '.tflite': 'application/octet-stream' };
const BUILTIN_DATA = /^(mnist(:(train|calib|test|all|\d+-\d+))?|random(:\d+)?)$/;

const startRunSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['model', 'data'],
  properties: {
    model: { type: 'string', minLength: 1, maxLength: 4096 },
    data: { type: 'string', minLength: 1, maxLength: 4096 },
    evalData: { type: 'string', minLength: 1, maxLength: 4096 },
    backend: { type: 'string', pattern: '^[a-z0-9-]+$', default: 'auto' },
    target: { type: 'string', enum: ['auto', ...Object.keys(TARGET_PROFILES)], default: 'auto' },
    mode: { type: 'string', enum: ['static', 'dynamic', 'weight-only'], default: 'static' },
    method: { type: 'string', enum: ['auto', 'minmax', 'percentile', 'entropy', 'mse'], default: 'auto' },
    samples: { type: 'integer', minimum: 1, maximum: 100000, default: DEFAULT_CALIBRATION_SAMPLES },
    evalSamples: { type: 'integer', minimum: 1, maximum: 100000, default: 200 },
    // The CLI's data flags, checked here by shape and again by the CLI's own parsers.
    inputShape: { type: 'array', maxItems: 16, items: { type: 'string', pattern: '^([A-Za-z0-9_.:/-]+:)?[0-9]+(,[0-9]+)*$', maxLength: 256 } },
    imageSize: { type: 'string', pattern: '^[0-9]{1,5}x[0-9]{1,5}$' },
    layout: { type: 'string', enum: ['NCHW', 'NHWC'] },
    mean: { type: 'string', pattern: '^-?[0-9.]+(,-?[0-9.]+){0,3}$' },
    std: { type: 'string', pattern: '^[0-9.]+(,[0-9.]+){0,3}$' },
    resize: { type: 'string', enum: ['cover', 'contain', 'fill', 'pad'] },
  },
} as const;

function walk(root: string, depth: number, out: { models: string[]; datasets: string[] }): void {
  if (depth < 0 || out.models.length + out.datasets.length > 500) return;
  let entries;
  try {
    entries = readdirSync(root, { withFileTypes: true });
  } catch {
    return;
  }
  for (const e of entries) {
    if (e.name.startsWith('.') || e.name === 'node_modules' || e.isSymbolicLink()) continue;
    const p = join(root, e.name);
    if (e.isFile() && (e.name.endsWith('.onnx') || e.name === 'model.json') && !e.name.includes('.int8.')) out.models.push(p);
    if (e.isFile() && e.name.endsWith('.npy')) out.datasets.push(p);
    if (e.isDirectory()) {
      const files = readdirSync(p);
      if (files.some((f) => /\.(png|jpe?g|webp|npy)$/i.test(f))) out.datasets.push(p);
      walk(p, depth - 1, out);
    }
  }
}

const LOOPBACK = new Set(['127.0.0.1', 'localhost', '::1', '[::1]']);

/** Loopback addresses (all of 127/8 and ::1) and the name localhost. */
export function isLoopbackHost(host: string): boolean {
  const h = host.replace(/^\[|\]$/g, '');
  return LOOPBACK.has(h) || (isIP(h) === 4 && h.startsWith('127.')) || h === '::ffff:127.0.0.1';
}

/**
 * Content-Security-Policy of the app: its own scripts and styles only, no inline script, no
 * framing, no plugins; the API is same-origin.
 */
export const CSP = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'";
/** Artifacts (report.html) run in a sandbox with an opaque origin: their own inline script, no API access. */
const ARTIFACT_CSP = "sandbox allow-scripts; default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src data:";

function sameSecret(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}

export async function startDashboard(options: DashboardOptions): Promise<Dashboard> {
  const bindHost = options.host ?? '127.0.0.1';
  if (!isLoopbackHost(bindHost) && !options.unsafeExpose) {
    throw errInvalidOption('--host', `${bindHost} is not a loopback address: anyone who can reach it could read your runs and, with the token, start runs`, 'Bind to 127.0.0.1 (the default), or pass --unsafe-expose if you really mean to serve other machines.');
  }
  const token = options.token ?? randomBytes(32).toString('base64url');
  const store = new RunStore(options.runsDir);
  const allowed = (options.allow ?? []).map((d) => resolve(d)).filter((d) => existsSync(d)).map((d) => realpathSync(d));
  const jobs = options.launch ? new JobQueue(options.launch, { concurrency: 1, maxQueued: options.maxQueuedRuns ?? 8 }) : undefined;
  // Unknown fields are refused (400), not silently dropped.
  const app = Fastify({ logger: false, bodyLimit: 64 * 1024, ajv: { customOptions: { removeAdditional: false, coerceTypes: false } } });
  let port = 0;
  const forbidden = (reply: import('fastify').FastifyReply, message: string) => reply.code(403).header('content-type', 'application/json; charset=utf-8').send({ error: { code: 'FORBIDDEN', message } });

  // Every request names this server by a loopback Host (DNS rebinding sends another name); every
  // state-changing one carries the per-launch token, and a browser's Origin must be this server.
  app.addHook('onRequest', async (req, reply) => {
    reply.header('content-security-policy', CSP);
    reply.header('x-content-type-options', 'nosniff');
    reply.header('referrer-policy', 'no-referrer');
    reply.header('x-frame-options', 'DENY');
    const hostHeader = req.headers.host ?? '';
    const m = /^(\[[^\]]+\]|[^:]+)(?::(\d+))?$/.exec(hostHeader);
    if (!options.unsafeExpose && (!m || !isLoopbackHost(m[1]) || Number(m[2] ?? 80) !== port)) return forbidden(reply, `Host "${hostHeader}" is not this dashboard (open it at 127.0.0.1:${port})`);
    if (req.method === 'GET' || req.method === 'HEAD') return;
    const origin = req.headers.origin;
    if (origin !== undefined && origin !== `http://${hostHeader}`) return forbidden(reply, `Origin "${origin}" may not change this dashboard`);
    const given = req.headers['x-qforge-token'];
    if (typeof given !== 'string' || !sameSecret(given, token)) return forbidden(reply, 'missing or wrong x-qforge-token (open the dashboard through the URL it printed)');
  });

  const allowedPath = (p: string): string | undefined => {
    const abs = resolve(p);
    if (!existsSync(abs)) return undefined;
    const real = realpathSync(abs);
    return allowed.some((root) => isInsideFolder(root, real)) ? real : undefined;
  };

  for (const [route, file] of Object.entries(STATIC)) {
    app.get(route, async (_req, reply) => reply.type(TYPES[extname(file)] ?? 'application/octet-stream').send(readFileSync(join(PUBLIC, file))));
  }

  app.get('/api/runs', async () => ({ runsDir: store.root, runs: store.list() }));

  app.get<{ Params: { id: string } }>('/api/runs/:id', async (req, reply) => {
    if (!store.runDir(req.params.id)) return reply.code(404).send({ error: { code: 'NOT_FOUND', message: 'no such run' } });
    const { report, problem } = store.read(req.params.id);
    if (!report) return reply.code(422).send({ error: { code: 'E_REPORT_INVALID', message: problem } });
    return report;
  });

  app.get<{ Params: { id: string; name: string } }>('/api/runs/:id/files/:name', async (req, reply) => {
    const file = store.openArtifact(req.params.id, req.params.name);
    if (!file) return reply.code(404).send({ error: { code: 'NOT_FOUND', message: 'no such file in that run (or not a regular, singly-linked file)' } });
    reply.header('content-disposition', `inline; filename="${req.params.name}"`);
    reply.header('content-security-policy', ARTIFACT_CSP);
    reply.header('content-length', String(file.size));
    if (file.size === 0) {
      closeSync(file.fd);
      return reply.type(TYPES[extname(req.params.name)] ?? 'application/octet-stream').send('');
    }
    // Served from the descriptor that was checked, so a swapped file is never read.
    const stream = createReadStream('', { fd: file.fd, start: 0, end: file.size - 1, autoClose: true });
    return reply.type(TYPES[extname(req.params.name)] ?? 'application/octet-stream').send(stream);
  });

  // Queued trials (sweep cells, sensitivity and search candidates on workers): read-only, like the runs list.
  const trials = options.trials?.(store) ?? (async () => trialsFromRunsFolder(store));
  app.get('/api/trials', async (_req, reply) => {
    try {
      return await trials();
    } catch (e) {
      const code = typeof (e as { code?: unknown }).code === 'string' && /^E_[A-Z_]+$/.test((e as { code: string }).code) ? (e as { code: string }).code : 'E_QUEUE_UNAVAILABLE';
      return reply.code(503).send({ error: { code, message: redactCredentials((e as Error).message ?? String(e)).slice(0, 500) } });
    }
  });

  app.get('/api/choices', async () => {
    const found = { models: [] as string[], datasets: [] as string[] };
    for (const root of allowed) walk(root, 4, found);
    return { allowed, models: found.models, datasets: ['mnist:calib', 'mnist:test', 'random', ...found.datasets], backends: options.backends ?? ['auto'], targets: ['auto', ...Object.keys(TARGET_PROFILES)], canStart: Boolean(jobs) };
  });

  app.post<{ Body: StartRunRequest }>('/api/runs', { schema: { body: startRunSchema } }, async (req, reply) => {
    if (!jobs) return reply.code(501).send({ error: { code: 'NOT_ENABLED', message: 'this dashboard was started without a run launcher' } });
    const body = req.body;
    const model = allowedPath(body.model);
    if (!model) return reply.code(403).send({ error: { code: 'FORBIDDEN_PATH', message: `model ${body.model} is not inside a folder the dashboard may read`, allowed } });
    const check = (spec: string | undefined) => (spec === undefined || BUILTIN_DATA.test(spec) ? spec : allowedPath(spec) ?? null);
    const data = check(body.data);
    const evalData = check(body.evalData);
    if (data === null || evalData === null) return reply.code(403).send({ error: { code: 'FORBIDDEN_PATH', message: 'dataset is not inside a folder the dashboard may read (or mnist/random)', allowed } });
    if (!statSync(model).isFile()) return reply.code(400).send({ error: { code: 'BAD_REQUEST', message: 'model must be a file' } });
    const job = jobs.start({ ...body, model, data: data!, evalData: evalData ?? undefined });
    if (!job) return reply.code(429).send({ error: { code: 'QUEUE_FULL', message: `${jobs.pending} runs are already waiting; start more when they finish` } });
    return reply.code(202).send({ jobId: job.id, state: job.state, position: jobs.position(job.id), events: `/api/jobs/${job.id}/events` });
  });

  app.get<{ Params: { id: string } }>('/api/jobs/:id/events', (req, reply) => {
    const job = jobs?.get(req.params.id);
    if (!job) return reply.code(404).send({ error: { code: 'NOT_FOUND', message: 'no such job' } });
    reply.hijack();
    const res = reply.raw;
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache', connection: 'keep-alive' });
    const send = (e: JobEvent) => res.write(`event: ${e.type}\ndata: ${JSON.stringify(e)}\n\n`);
    for (const e of job.events) send(e);
    if (job.state === 'done' || job.state === 'failed') return res.end();
    const onEvent = (e: JobEvent) => {
      send(e);
      if (e.type === 'done' || e.type === 'failed') {
        job.emitter.off('event', onEvent);
        res.end();
      }
    };
    job.emitter.on('event', onEvent);
    req.raw.on('close', () => job.emitter.off('event', onEvent));
  });

  await app.listen({ host: bindHost, port: options.port ?? 0 });
  const addr = app.server.address() as AddressInfo;
  port = addr.port;
  const host = addr.family === 'IPv6' ? `[${addr.address}]` : addr.address;
  const url = `http://${host}:${addr.port}`;
  const close = async () => {
    // Runs first: their event streams end with "failed", so the server has no open request to wait for.
    await jobs?.close();
    await app.close();
  };
  return { url, openUrl: `${url}/?token=${encodeURIComponent(token)}`, token, app, close };
}
