/**
 * A resolved config as a training job: the model_config view the rest of trainhook reads
 * (name, task, base model, epochs… for the job row, callbacks and pages) and the worker's
 * Ultralytics arguments. Pure.
 *
 * The worker gets the resolved config as is, except what depends on the slot the job gets:
 * device is the scheduler's device (as for model_config jobs), AMP is off when that is not a
 * CUDA device, and exist_ok is set (the run directory is the job's).
 */
import { ultralyticsDefaults, type ConfigTask } from './catalog.js';

/** Keys of the resolved config that are not Ultralytics train() arguments of the worker. */
const NOT_WORKER_ARGS = new Set(['model']);

/** Ultralytics' spelling of a device ('cpu', '0'); '' = let Ultralytics choose. */
function ultralyticsDeviceName(device: string): string {
  const d = device.trim().toLowerCase();
  if (d === 'auto' || d === '') return '';
  return d.startsWith('cuda:') ? d.slice('cuda:'.length) : d === 'cuda' ? '0' : d;
}

export function configToWorkerArgs(config: Record<string, unknown>, device: string): Record<string, unknown> {
  const dev = ultralyticsDeviceName(device);
  const onGpu = dev !== 'cpu' && dev !== 'mps' && dev !== '';
  const args: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(config)) {
    if (NOT_WORKER_ARGS.has(key) || value === null || value === undefined) continue;
    args[key] = value;
  }
  delete args['device'];
  if (dev !== '') args['device'] = dev;
  // On CPU, AMP does nothing and its check would try to download yolo26n.pt (see training/args.ts).
  args['amp'] = onGpu && config['amp'] !== false;
  args['exist_ok'] = true;
  return args;
}

/** The architecture a task trains from scratch when a config names none. */
export const DEFAULT_MODEL: Record<ConfigTask, string> = {
  detect: 'yolo11n.yaml',
  segment: 'yolo11n-seg.yaml',
  classify: 'yolo11n-cls.yaml',
  pose: 'yolo11n-pose.yaml',
  obb: 'yolo11n-obb.yaml',
};

/** The model_config fields a config job is described by (job row, callbacks, pages). */
export function modelConfigView(name: string, task: ConfigTask, config: Record<string, unknown>) {
  const num = (key: string, fallback: number) => (typeof config[key] === 'number' ? (config[key] as number) : fallback);
  const augmentation: Record<string, number> = {};
  for (const key of ['hsv_h', 'hsv_s', 'hsv_v', 'degrees', 'translate', 'scale', 'shear', 'perspective', 'flipud', 'fliplr', 'mosaic', 'mixup']) {
    if (typeof config[key] === 'number') augmentation[key] = config[key] as number;
  }
  return {
    name,
    task,
    base_model: typeof config['model'] === 'string' ? (config['model'] as string) : DEFAULT_MODEL[task],
    epochs: num('epochs', 100),
    batch_size: num('batch', 16),
    image_size: num('imgsz', 640),
    learning_rate: num('lr0', 0.01),
    optimizer: (typeof config['optimizer'] === 'string' ? config['optimizer'] : 'auto') as 'auto',
    patience: num('patience', 100),
    seed: num('seed', 0),
    augmentation,
  };
}

/**
 * The full set of training arguments a job ran (or will run) with: Ultralytics' defaults under
 * the job's explicit arguments, without device (shown on its own) and exist_ok.
 * Used to compare jobs whatever way they were submitted.
 */
export function effectiveTrainArgs(
  task: ConfigTask,
  explicit: Record<string, unknown>,
  baseModel: string | null,
): Record<string, unknown> {
  const out: Record<string, unknown> = { ...ultralyticsDefaults(task) };
  for (const [key, value] of Object.entries(explicit)) {
    if (key === 'device' || key === 'exist_ok') continue;
    out[key] = value;
  }
  out['model'] = baseModel;
  delete out['device'];
  return out;
}
