/**
 * Base configs and the resolver over HTTP, for every engine (User and Developer presets):
 *
 *   GET  /api/v1/config/default?framework=ultralytics&task=detect&mode=user|developer
 *   POST /api/v1/config/resolve {framework, task, mode, base_config?, overrides}
 *
 * The resolved `config` is what POST /api/v1/train accepts as `config` (with name, task and
 * framework). The task names detection and segmentation are accepted as aliases.
 */
import { createRoute, z, type OpenAPIHono } from '@hono/zod-openapi';
import { HttpError } from '../../core/errors.js';
import type { Engines } from '../../engines/index.js';
import type { AnyEngine } from '../../engines/types.js';
import { frameworkTaskBranches } from '../../jobs/request.js';
import type { AppDeps } from '../../http/deps.js';
import { requireBody } from '../../http/body.js';
import { errorResponses } from '../../http/schemas.js';

const CONFIG_MODES = ['user', 'developer'] as const;
const ALIASES: Record<string, string> = { detection: 'detect', segmentation: 'segment' };

/** The tasks that have a base config in some engine, and their aliases. */
function configTasks(engines: Engines): string[] {
  const tasks = [...new Set(engines.list().flatMap((e) => e.presets.tasks))];
  return [...tasks, ...Object.keys(ALIASES).filter((a) => tasks.includes(ALIASES[a]!))];
}

const Task = (tasks: string[]) =>
  z
    .enum(tasks as [string, ...string[]])
    .optional()
    .transform((t) => (t !== undefined ? (ALIASES[t] ?? t) : t))
    .openapi({ description: "The engine's task (default: its first); detection and segmentation are aliases" });
const Mode = z.enum(CONFIG_MODES).default('developer');

const FieldSchema = z
  .object({
    key: z.string(),
    type: z.string(),
    value: z.unknown().openapi({ description: "The base config's value" }),
    default: z.unknown().openapi({ description: "The engine library's own default" }),
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
  .catchall(z.unknown())
  .openapi('ConfigField', { description: 'An engine may add fields of its own (the Ultralytics engine: ultralytics_default).' });

const defaultRoute = (frameworks: [string, ...string[]], tasks: string[]) =>
  createRoute({
    method: 'get',
    path: '/api/v1/config/default',
    summary: 'The base config of an engine and task, with the fields a mode may change',
    security: [{ bearer: [] }],
    description: 'A task the engine has no base config for is 404 CONFIG_NOT_FOUND (GET /api/v1/engines lists each engine\'s preset tasks).',
    request: { query: z.object({ framework: z.enum(frameworks).default(frameworks[0]), task: Task(tasks), mode: Mode }).strict() },
    responses: {
      200: {
        description: 'The base config',
        content: {
          'application/json': {
            schema: z.object({
              framework: z.string(),
              task: z.string(),
              mode: z.string(),
              version: z.string().openapi({ description: "The pinned version of the engine's library" }),
              editable: z.array(z.string()),
              fields: z.array(FieldSchema),
              config: z.record(z.string(), z.unknown()),
              yaml: z.string(),
              command: z.string().nullable(),
            })
            .catchall(z.unknown())
            .openapi({ description: 'An engine may add fields of its own (the Ultralytics engine: ultralytics_version).' }),
          },
        },
      },
      ...errorResponses(400, 401, 404),
    },
  });

const resolveBody = (engines: Engines) => {
  const frameworks = engines.names() as [string, ...string[]];
  return z
    .object({
      framework: z.enum(frameworks).default(frameworks[0]),
      task: Task(configTasks(engines)),
      mode: Mode,
      base_config: z
        .record(z.string(), z.unknown())
        .optional()
        .openapi({ description: "A full config to start from (e.g. one resolved earlier); default: the engine's base" }),
      overrides: z
        .record(z.string(), z.unknown())
        .default({})
        .openapi({ description: "Arguments to change; user mode accepts the engine's user keys only (GET /config/default lists them)" }),
    })
    .strict()
    .openapi('ResolveConfigRequest', { anyOf: frameworkTaskBranches(engines, presetTasksWithAliases) } as object);
};

const presetTasksWithAliases = (e: AnyEngine) => [
  ...e.presets.tasks,
  ...Object.keys(ALIASES).filter((a) => e.presets.tasks.includes(ALIASES[a]!)),
];

const ResolvedSchema = z
  .object({
    framework: z.string(),
    task: z.string(),
    mode: z.string(),
    version: z.string(),
    config: z.record(z.string(), z.unknown()).openapi({ description: 'Send as `config` to POST /api/v1/train' }),
    changed: z.record(z.string(), z.object({ from: z.unknown(), to: z.unknown() })),
    yaml: z.string().openapi({ description: 'The base YAML with the resolved values (comments kept)' }),
    command: z.string().nullable().openapi({ example: 'yolo detect train data=data.yaml model=yolo11n.yaml epochs=50 patience=50' }),
    argv: z.array(z.string()).nullable(),
  })
  .catchall(z.unknown())
  .openapi('ResolvedConfig', { description: 'An engine may add fields of its own (the Ultralytics engine: ultralytics_version).' });

const resolveRoute = (engines: Engines) =>
  createRoute({
    method: 'post',
    path: '/api/v1/config/resolve',
    summary: 'Merge overrides onto a base config; the resolved config, its YAML and the equivalent command line',
    description:
      "Every key is checked against the engine's argument set and its range; unknown, out-of-range or not-allowed keys are 400 CONFIG_INVALID with one entry per key in details ({path, message, code}).",
    security: [{ bearer: [] }],
    middleware: [requireBody] as const,
    request: { body: { required: true, content: { 'application/json': { schema: resolveBody(engines) } } } },
    responses: {
      200: { description: 'Resolved', content: { 'application/json': { schema: ResolvedSchema } } },
      ...errorResponses(400, 401, 413, 415),
    },
  });

/** The engine and one of its tasks with a base config, or an error (400 or 404) that says which exist. */
function presetTask(
  engines: Engines,
  framework: string,
  task: string | undefined,
  missing: { status: 400; code: 'VALIDATION_ERROR' } | { status: 404; code: 'CONFIG_NOT_FOUND' },
): { engine: AnyEngine; task: string } {
  const engine = engines.require(framework);
  const chosen = task ?? engine.presets.tasks[0]!;
  if (!engine.presets.tasks.includes(chosen)) {
    throw new HttpError(missing.status, missing.code, `${engine.name} has base configs for ${engine.presets.tasks.join(', ')}, not ${chosen}`, [
      { path: ['task'], message: `one of ${engine.presets.tasks.join(', ')}` },
    ]);
  }
  return { engine, task: chosen };
}


export function registerConfig(app: OpenAPIHono, deps: AppDeps): void {
  const frameworks = deps.engines.names() as [string, ...string[]];
  app.openapi(defaultRoute(frameworks, configTasks(deps.engines)), (c) => {
    const q = c.req.valid('query');
    const { engine, task } = presetTask(deps.engines, q.framework, q.task, { status: 404, code: 'CONFIG_NOT_FOUND' });
    const view = engine.presets.defaults(task, q.mode);
    return c.json(
      {
        framework: engine.name,
        task,
        mode: q.mode,
        version: engine.version,
        ...engine.presets.answerFields,
        editable: view.editable,
        fields: view.fields,
        config: view.config,
        yaml: view.yaml,
        command: view.command,
      },
      200,
    );
  });

  app.openapi(resolveRoute(deps.engines), (c) => {
    const body = c.req.valid('json');
    const { engine, task } = presetTask(deps.engines, body.framework, body.task, { status: 400, code: 'VALIDATION_ERROR' });
    const result = engine.presets.resolve({ task, mode: body.mode, base_config: body.base_config, overrides: body.overrides });
    if (!result.ok) {
      throw new HttpError(400, 'CONFIG_INVALID', `invalid config: ${result.issues.length} problem(s)`, result.issues);
    }
    return c.json({ framework: engine.name, task, mode: body.mode, version: engine.version, ...engine.presets.answerFields, ...result.value }, 200);
  });
}
