/**
 * Base configs and the resolver over HTTP (seed 004 "Config Base and Resolver"):
 *
 *   GET  /api/v1/config/default?framework=ultralytics&task=detect&mode=user|developer
 *   POST /api/v1/config/resolve {framework, task, mode, base_config?, overrides}
 *
 * The resolved `config` is what POST /api/v1/train accepts as `config` (with name and task).
 * Seed 004's task names (detection, segmentation) are accepted as aliases.
 */
import { createRoute, z, type OpenAPIHono } from '@hono/zod-openapi';
import { CONFIG_MODES, FRAMEWORKS, ULTRALYTICS_VERSION, modeKeys } from '../../configs/catalog.js';
import { commandLine } from '../../configs/cli.js';
import { baseConfig, baseConfigText, fieldList, resolveConfig } from '../../configs/resolver.js';
import { HttpError } from '../../errors.js';
import type { AppDeps } from '../deps.js';
import { errorResponses } from '../schemas.js';

const Task = z
  .enum(['detect', 'segment', 'detection', 'segmentation'])
  .default('detect')
  .transform((t) => (t === 'detection' ? 'detect' : t === 'segmentation' ? 'segment' : t));
const Framework = z.enum(FRAMEWORKS).default('ultralytics');
const Mode = z.enum(CONFIG_MODES).default('developer');

const FieldSchema = z
  .object({
    key: z.string(),
    type: z.string(),
    value: z.unknown().openapi({ description: "The base config's value" }),
    ultralytics_default: z.unknown(),
    min: z.number().optional(),
    max: z.number().optional(),
    exclusiveMin: z.boolean().optional(),
    multipleOf: z.number().optional(),
    choices: z.array(z.union([z.string(), z.boolean()])).optional(),
    nullable: z.boolean().optional(),
    note: z.string().optional(),
    section: z.string(),
    description: z.string().nullable(),
  })
  .openapi('ConfigField');

const defaultRoute = createRoute({
  method: 'get',
  path: '/api/v1/config/default',
  summary: 'The base config of a framework and task, with the fields a mode may change',
  security: [{ bearer: [] }],
  request: { query: z.object({ framework: Framework, task: Task, mode: Mode }).strict() },
  responses: {
    200: {
      description: 'The base config',
      content: {
        'application/json': {
          schema: z.object({
            framework: z.string(),
            task: z.string(),
            mode: z.string(),
            ultralytics_version: z.string(),
            editable: z.array(z.string()),
            fields: z.array(FieldSchema),
            config: z.record(z.string(), z.unknown()),
            yaml: z.string(),
            command: z.string(),
          }),
        },
      },
    },
    ...errorResponses(400, 401),
  },
});

const ResolveBody = z
  .object({
    framework: Framework,
    task: Task,
    mode: Mode,
    base_config: z
      .record(z.string(), z.unknown())
      .optional()
      .openapi({ description: "A full config to start from (e.g. one resolved earlier); default: the repository's base" }),
    overrides: z
      .record(z.string(), z.unknown())
      .default({})
      .openapi({ description: 'Ultralytics arguments to change; user mode accepts model, epochs, imgsz, batch, amp, patience, device' }),
  })
  .strict()
  .openapi('ResolveConfigRequest');

const ResolvedSchema = z
  .object({
    framework: z.string(),
    task: z.string(),
    mode: z.string(),
    ultralytics_version: z.string(),
    config: z.record(z.string(), z.unknown()).openapi({ description: 'Send as `config` to POST /api/v1/train' }),
    changed: z.record(z.string(), z.object({ from: z.unknown(), to: z.unknown() })),
    yaml: z.string().openapi({ description: 'The base YAML with the resolved values (comments kept)' }),
    command: z.string().openapi({ example: 'yolo detect train data=data.yaml model=yolo11n.yaml epochs=50 patience=50' }),
    argv: z.array(z.string()),
  })
  .openapi('ResolvedConfig');

const resolveRoute = createRoute({
  method: 'post',
  path: '/api/v1/config/resolve',
  summary: 'Merge overrides onto a base config; the resolved config, its YAML and the equivalent yolo command',
  description:
    'Every key is checked against the Ultralytics argument set (default.yaml of the pinned version) and its range; unknown, out-of-range or not-allowed keys are 400 CONFIG_INVALID with one entry per key in details ({path, message, code}).',
  security: [{ bearer: [] }],
  request: { body: { required: true, content: { 'application/json': { schema: ResolveBody } } } },
  responses: {
    200: { description: 'Resolved', content: { 'application/json': { schema: ResolvedSchema } } },
    ...errorResponses(400, 401),
  },
});

export function registerConfig(app: OpenAPIHono, _deps: AppDeps): void {
  app.openapi(defaultRoute, (c) => {
    const { framework, task, mode } = c.req.valid('query');
    const config = baseConfig(framework, task);
    return c.json(
      {
        framework,
        task,
        mode,
        ultralytics_version: ULTRALYTICS_VERSION,
        editable: modeKeys(task, mode),
        fields: fieldList(framework, task, mode).map((f) => ({ ...f, choices: f.choices ? [...f.choices] : undefined })),
        config,
        yaml: baseConfigText(framework, task),
        command: commandLine(task, config),
      },
      200,
    );
  });

  app.openapi(resolveRoute, (c) => {
    const body = c.req.valid('json');
    const result = resolveConfig(body);
    if (!result.ok) {
      throw new HttpError(400, 'CONFIG_INVALID', `invalid config: ${result.issues.length} problem(s)`, result.issues);
    }
    return c.json(result.value, 200);
  });
}
