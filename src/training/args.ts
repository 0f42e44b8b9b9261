/**
 * POST /train's model_config + resources → the Ultralytics train() arguments of a WorkerSpec.
 *
 * Pure. The worker adds data/project/name/exist_ok itself, and forces amp=false on CPU again
 * (its CUDA AMP check is patched to run offline: see worker/offline.py).
 */
import { configToWorkerArgs } from '../configs/train-args.js';
import type { ModelConfig } from '../jobs/request.js';

export type ModelConfigInput = Pick<
  ModelConfig,
  'epochs' | 'batch_size' | 'image_size' | 'learning_rate' | 'optimizer' | 'patience' | 'seed'
> & {
  augmentation?: Partial<Record<string, number>> | undefined;
  /** A request sent as a resolved config (src/configs): its arguments are used as they are. */
  resolved_config?: Record<string, unknown> | undefined;
};

export type ResourcesInput = { workers?: number | undefined } | undefined;

/**
 * Ultralytics' spelling of a device: 'cpu', 'mps', '0', '0,1'. Accepts 'cuda:N' too. 'auto' and
 * '' leave the choice to Ultralytics (first GPU, else CPU), which callers should avoid: the
 * scheduler knows which slot the job holds.
 */
export function normalizeDevice(device: string): string {
  const d = device.trim().toLowerCase();
  if (d === 'auto') return '';
  return d
    .split(',')
    .map((x) => (x.startsWith('cuda:') ? x.slice('cuda:'.length) : x === 'cuda' ? '0' : x))
    .join(',');
}

export function toUltralyticsArgs(
  model: ModelConfigInput,
  resources: ResourcesInput,
  device: string,
): Record<string, unknown> {
  if (model.resolved_config) return configToWorkerArgs(model.resolved_config, device);
  const dev = normalizeDevice(device);
  const onGpu = dev !== 'cpu' && dev !== 'mps' && dev !== '';
  const args: Record<string, unknown> = {
    epochs: model.epochs,
    batch: model.batch_size,
    imgsz: model.image_size,
    lr0: model.learning_rate,
    optimizer: model.optimizer,
    patience: model.patience,
    seed: model.seed,
  };
  for (const [key, value] of Object.entries(model.augmentation ?? {})) {
    if (value !== undefined) args[key] = value;
  }
  if (resources?.workers !== undefined) args['workers'] = resources.workers;
  if (dev !== '') args['device'] = dev;
  Object.assign(args, {
    // AMP only on CUDA: on CPU it does nothing, and its check would try to download yolo26n.pt.
    amp: onGpu,
    plots: true,
    deterministic: true,
    verbose: true,
    val: true,
    exist_ok: true,
  });
  return args;
}
