/**
 * POST /train's model_config + resources → the Ultralytics train() arguments of a WorkerSpec.
 *
 * Pure. The worker adds data/project/name/exist_ok itself, and forces amp=false on CPU again
 * (its CUDA AMP check is patched to run offline: see worker/engines/ultralytics/offline.py).
 */
import { configToWorkerArgs } from './config-args.js';
import type { UltralyticsModelConfig } from './request.js';

export type ModelConfigInput = Pick<
  UltralyticsModelConfig,
  'epochs' | 'batch_size' | 'image_size' | 'learning_rate' | 'optimizer' | 'patience' | 'seed'
> & {
  augmentation?: Partial<Record<string, number>> | undefined;
};

export type ResourcesInput = { workers?: number | undefined; max_memory_gb?: number | undefined } | undefined;

/** RAM the trainer process itself takes on top of its DataLoader workers, and each worker's share (GiB). */
const TRAINER_RAM_GB = 1.5;
const DATALOADER_WORKER_RAM_GB = 0.5;

/**
 * Arguments that keep a run within resources.max_memory_gb (the service also stops a worker whose
 * process group goes past it): no image cache in RAM (it grows with the dataset; the disk cache
 * keeps the speed-up), and no more DataLoader workers than the limit leaves room for. The batch
 * is left alone: it is held in GPU memory on a GPU, and AutoBatch (batch -1) sizes it there.
 */
export function withinMemory(args: Record<string, unknown>, maxMemoryGb: number | undefined): Record<string, unknown> {
  if (maxMemoryGb === undefined) return args;
  const out = { ...args };
  if (out['cache'] === true || out['cache'] === 'ram') out['cache'] = 'disk';
  const room = Math.max(0, Math.floor((maxMemoryGb - TRAINER_RAM_GB) / DATALOADER_WORKER_RAM_GB));
  const asked = typeof out['workers'] === 'number' ? out['workers'] : 8; // Ultralytics' default
  out['workers'] = Math.min(asked, room);
  return out;
}

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

/**
 * The worker's arguments. A request sent as a resolved config (its `resolvedConfig`) trains with
 * that config's arguments as they are.
 */
export function toUltralyticsArgs(
  model: ModelConfigInput,
  resources: ResourcesInput,
  device: string,
  resolvedConfig?: Record<string, unknown> | null,
): Record<string, unknown> {
  if (resolvedConfig) return withinMemory(configToWorkerArgs(resolvedConfig, device), resources?.max_memory_gb);
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
  return withinMemory(args, resources?.max_memory_gb);
}
