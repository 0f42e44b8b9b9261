/**
 * GET /api/v1/engines: what this server can train. Each engine with its license, library
 * version, tasks, the base models it knows by name per task, its dataset formats and metrics
 * per task, its presets, export formats, and the JSON Schema of its model_config (what POST
 * /api/v1/train accepts for it).
 */
import { createRoute, z, type OpenAPIHono } from '@hono/zod-openapi';
import type { AnyEngine } from '../../engines/types.js';
import type { AppDeps } from '../../http/deps.js';
import { errorResponses } from '../../http/schemas.js';

const EngineSchema = z
  .object({
    name: z.string().openapi({ description: 'The `framework` of a model_config' }),
    label: z.string(),
    license: z.string(),
    version: z.string(),
    default: z.boolean().openapi({ description: 'Requests that name no framework are for this engine' }),
    tasks: z.array(
      z.object({
        name: z.string(),
        models: z.array(z.string()).openapi({ description: 'Base models known by name' }),
        dataset_formats: z.array(z.string()),
        export_formats: z.array(z.string()),
        metrics: z.object({
          fields: z.array(z.object({ key: z.string(), label: z.string(), goal: z.string(), kind: z.string() })),
          best: z.object({ key: z.string(), goal: z.string() }),
          headline: z.array(z.string()),
        }),
      }),
    ),
    presets: z.object({ tasks: z.array(z.string()), modes: z.array(z.string()) }),
    config_schema: z.record(z.string(), z.unknown()).openapi({ description: 'JSON Schema of this engine\'s model_config' }),
  })
  .openapi('Engine');

const route = createRoute({
  method: 'get',
  path: '/api/v1/engines',
  summary: 'The training engines of this server: tasks, base models, dataset formats, metrics, presets and config schemas',
  security: [{ bearer: [] }],
  responses: {
    200: { description: 'The engines', content: { 'application/json': { schema: z.object({ engines: z.array(EngineSchema) }) } } },
    ...errorResponses(401),
  },
});

function engineView(engine: AnyEngine, isDefault: boolean) {
  return {
    name: engine.name,
    label: engine.label,
    license: engine.license,
    version: engine.version,
    default: isDefault,
    tasks: engine.tasks.map((task) => {
      const metrics = engine.metrics(task);
      return {
        name: task,
        models: engine.models(task),
        dataset_formats: engine.datasetFormats(task),
        export_formats: engine.exportFormats(task),
        metrics: { fields: metrics.fields, best: metrics.best, headline: metrics.headline },
      };
    }),
    presets: { tasks: engine.presets.tasks, modes: ['user', 'developer'] },
    config_schema: z.toJSONSchema(engine.modelConfig, { io: 'input', unrepresentable: 'any' }) as Record<string, unknown>,
  };
}

export function registerEngines(app: OpenAPIHono, deps: AppDeps): void {
  // The same for every request: built once.
  const body = { engines: deps.engines.list().map((e) => engineView(e, e === deps.engines.default)) };
  app.openapi(route, (c) => c.json(body, 200));
}
