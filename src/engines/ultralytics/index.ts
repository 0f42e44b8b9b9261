/**
 * Ultralytics YOLO as a trainhook engine: detect, segment, classify, pose and obb, trained by
 * worker/engines/ultralytics/ in its own venv.
 */
import { fileURLToPath } from 'node:url';
import { JobError } from '../../core/errors.js';
import type { ConfigIssue, Engine, EnginePresets, PresetView } from '../types.js';
import { toUltralyticsArgs } from './args.js';
import { officialTask, officialWeights, ultralyticsBaseModel } from './base-models.js';
import { CONFIG_TASKS, ULTRALYTICS_VERSION, modeKeys, type ConfigTask } from './catalog.js';
import { commandLine } from './cli.js';
import { effectiveTrainArgs, modelConfigView } from './config-args.js';
import { ultralyticsMetrics } from './metrics.js';
import { ULTRALYTICS_TASKS, UltralyticsModelConfigSchema, type UltralyticsModelConfig } from './request.js';
import { baseConfig, baseConfigText, fieldList, resolveConfig } from './resolver.js';

const WORKER = fileURLToPath(new URL('../../../worker/engines/ultralytics/', import.meta.url));

function configTask(task: string): ConfigTask | null {
  return (CONFIG_TASKS as readonly string[]).includes(task) ? (task as ConfigTask) : null;
}

const noPresets = (task: string): ConfigIssue[] => [
  { path: ['task'], code: 'invalid_value', message: `no base config for task ${task} yet (tasks with one: ${CONFIG_TASKS.join(', ')})` },
];

const presets: EnginePresets = {
  tasks: [...CONFIG_TASKS],
  answerFields: { ultralytics_version: ULTRALYTICS_VERSION },
  defaults(task, mode): PresetView {
    const t = configTask(task);
    if (!t) throw new JobError('UNKNOWN_ERROR', noPresets(task)[0]!.message);
    const config = baseConfig('ultralytics', t);
    return {
      editable: modeKeys(t, mode),
      fields: fieldList('ultralytics', t, mode).map((f) => ({
        ...f,
        default: f.ultralytics_default,
        choices: f.choices ? [...f.choices] : undefined,
      })),
      config,
      yaml: baseConfigText('ultralytics', t),
      command: commandLine(t, config),
    };
  },
  resolve(input) {
    const t = configTask(input.task);
    if (!t) return { ok: false, issues: noPresets(input.task) };
    const result = resolveConfig({ ...input, framework: 'ultralytics', task: t });
    if (!result.ok) return result;
    const { config, changed, yaml, command, argv } = result.value;
    return { ok: true, value: { config, changed, yaml, command, argv } };
  },
  submission(name, task, config) {
    const resolved = presets.resolve({ task, mode: 'developer', overrides: config });
    if (!resolved.ok) return { ok: false, issues: resolved.issues.map((i) => ({ ...i, path: ['config', ...i.path.slice(1)] })) };
    const t = task as ConfigTask;
    const view = UltralyticsModelConfigSchema.parse({ framework: 'ultralytics', ...modelConfigView(name, t, resolved.value.config) });
    return { ok: true, modelConfig: view, resolvedConfig: resolved.value.config };
  },
};

export const ultralyticsEngine: Engine<UltralyticsModelConfig> = {
  name: 'ultralytics',
  label: 'Ultralytics YOLO',
  license: 'AGPL-3.0',
  version: ULTRALYTICS_VERSION,
  tasks: ULTRALYTICS_TASKS,
  modelConfig: UltralyticsModelConfigSchema,
  presets,
  models: (task) => officialWeights(task),
  baseModel: (mc) => ultralyticsBaseModel(mc.base_model, mc.base_model_sha256),
  datasetFormats: (task) => (task === 'classify' ? ['classify'] : ['yolo']),
  refuse(mc) {
    const weightTask = officialTask(mc.base_model);
    if (weightTask && weightTask !== mc.task) {
      return `base_model ${mc.base_model} is a ${weightTask} model; this job's task is ${mc.task} (pick a ${mc.task} weight, e.g. ${officialWeights(mc.task)[0] ?? 'a .yaml'})`;
    }
    return null;
  },
  trainArgs: (mc, ctx) => toUltralyticsArgs(mc, ctx.resources, ctx.device, ctx.resolvedConfig),
  effectiveArgs: (task, trainArgs, baseModel) =>
    effectiveTrainArgs(configTask(task) ?? 'detect', trainArgs, baseModel),
  metrics: ultralyticsMetrics,
  imageSize: (mc, args) => (typeof args['imgsz'] === 'number' ? args['imgsz'] : mc.image_size),
  python: {
    requirements: `${WORKER}requirements.txt`,
    train: `${WORKER}train.py`,
    export: `${WORKER}export.py`,
    predict: `${WORKER}predict.py`,
    checkWeights: `${WORKER}check_weights.py`,
  },
  files: {
    checkpoints: ['weights/*.pt'],
    callbackArtifacts: {
      confusion_matrix: ['confusion_matrix.png'],
      // Ultralytics 8.3 and later prefix curves with Box/Mask; older releases did not.
      pr_curve: ['BoxPR_curve.png', 'PR_curve.png', 'MaskPR_curve.png'],
      f1_curve: ['BoxF1_curve.png', 'F1_curve.png', 'MaskF1_curve.png'],
      results_csv: ['results.csv'],
    },
    modelFormat: 'pytorch',
  },
  exportFormats: () => ['onnx', 'torchscript'],
};
