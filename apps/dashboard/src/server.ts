// The dashboard server: the app, a JSON API over the runs folder, and runs started from the page.
import { existsSync, readdirSync, readFileSync, realpathSync, statSync, createReadStream } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { extname, join, resolve } from 'node:path';
import Fastify, { type FastifyInstance } from 'fastify';
import { TARGET_PROFILES } from '@qforge/core';
import { JobQueue, type JobEvent, type RunLauncher, type StartRunRequest } from './jobs';
import { inside, RunStore } from './runs';

export interface DashboardOptions {
  runsDir: string;
  /** Folders models and datasets may be read from when starting runs. */
  allow?: string[];
  /** @defaultValue '127.0.0.1' */
  host?: string;
  /** @defaultValue 0 (any free port) */
  port?: number;
  /** Starts runs; without it, POST /api/runs answers 501. */
  launch?: RunLauncher;
  backends?: string[];
}

export interface Dashboard {
  url: string;
  app: FastifyInstance;
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
    mode: { type: 'string', enum: ['static', 'dynamic'], default: 'static' },
    method: { type: 'string', enum: ['minmax', 'percentile', 'entropy', 'mse'], default: 'minmax' },
    samples: { type: 'integer', minimum: 1, maximum: 100000, default: 64 },
    evalSamples: { type: 'integer', minimum: 1, maximum: 100000, default: 200 },
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

export async function startDashboard(options: DashboardOptions): Promise<Dashboard> {
  const store = new RunStore(options.runsDir);
  const allowed = (options.allow ?? []).map((d) => resolve(d)).filter((d) => existsSync(d)).map((d) => realpathSync(d));
  const jobs = options.launch ? new JobQueue(options.launch) : undefined;
  // Unknown fields are refused (400), not silently dropped.
  const app = Fastify({ logger: false, bodyLimit: 64 * 1024, ajv: { customOptions: { removeAdditional: false, coerceTypes: false } } });

  const allowedPath = (p: string): string | undefined => {
    const abs = resolve(p);
    if (!existsSync(abs)) return undefined;
    const real = realpathSync(abs);
    return allowed.some((root) => inside(root, real)) ? real : undefined;
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
    const file = store.artifactPath(req.params.id, req.params.name);
    if (!file) return reply.code(404).send({ error: { code: 'NOT_FOUND', message: 'no such file in that run' } });
    reply.header('content-disposition', `inline; filename="${req.params.name}"`);
    return reply.type(TYPES[extname(file)] ?? 'application/octet-stream').send(createReadStream(file));
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
    return reply.code(202).send({ jobId: job.id, events: `/api/jobs/${job.id}/events` });
  });

  app.get<{ Params: { id: string } }>('/api/jobs/:id/events', (req, reply) => {
    const job = jobs?.get(req.params.id);
    if (!job) return reply.code(404).send({ error: { code: 'NOT_FOUND', message: 'no such job' } });
    reply.hijack();
    const res = reply.raw;
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache', connection: 'keep-alive' });
    const send = (e: JobEvent) => res.write(`event: ${e.type}\ndata: ${JSON.stringify(e)}\n\n`);
    for (const e of job.events) send(e);
    if (job.state !== 'running') return res.end();
    const onEvent = (e: JobEvent) => {
      send(e);
      if (e.type !== 'progress') {
        job.emitter.off('event', onEvent);
        res.end();
      }
    };
    job.emitter.on('event', onEvent);
    req.raw.on('close', () => job.emitter.off('event', onEvent));
  });

  await app.listen({ host: options.host ?? '127.0.0.1', port: options.port ?? 0 });
  const addr = app.server.address() as AddressInfo;
  const host = addr.family === 'IPv6' ? `[${addr.address}]` : addr.address;
  return { url: `http://${host}:${addr.port}`, app, close: () => app.close() };
}
