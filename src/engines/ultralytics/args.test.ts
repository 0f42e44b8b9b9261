import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ResourcesSchema } from '../../jobs/request.js';
import { UltralyticsModelConfigSchema as ModelConfigSchema } from './request.js';
import { normalizeDevice, toUltralyticsArgs } from './args.js';

const model = ModelConfigSchema.parse({ name: 'm', epochs: 3, batch_size: 8, image_size: 320, learning_rate: 0.002 });
const resources = ResourcesSchema.parse({ workers: 2 });

describe('toUltralyticsArgs', () => {
  it('maps the request names to Ultralytics names', () => {
    const args = toUltralyticsArgs(model, resources, 'cpu');
    assert.equal(args['epochs'], 3);
    assert.equal(args['batch'], 8);
    assert.equal(args['imgsz'], 320);
    assert.equal(args['lr0'], 0.002);
    assert.equal(args['optimizer'], 'auto');
    assert.equal(args['patience'], 50);
    assert.equal(args['seed'], 0);
    assert.equal(args['workers'], 2);
    assert.equal(args['device'], 'cpu');
    for (const key of ['batch_size', 'image_size', 'learning_rate', 'augmentation', 'name', 'task', 'base_model']) {
      assert.ok(!(key in args), `${key} must not reach Ultralytics`);
    }
  });

  it('sets the fixed arguments', () => {
    const args = toUltralyticsArgs(model, resources, 'cpu');
    assert.equal(args['plots'], true);
    assert.equal(args['deterministic'], true);
    assert.equal(args['verbose'], true);
    assert.equal(args['val'], true);
    assert.equal(args['exist_ok'], true);
  });

  it('passes augmentation keys as they are', () => {
    const m = ModelConfigSchema.parse({ name: 'm', augmentation: { mosaic: 0, fliplr: 0.25, degrees: 10 } });
    const args = toUltralyticsArgs(m, resources, 'cpu');
    assert.equal(args['mosaic'], 0);
    assert.equal(args['fliplr'], 0.25);
    assert.equal(args['degrees'], 10);
    assert.ok(!('hsv_h' in args), 'unset augmentations keep the Ultralytics default');
  });

  it('turns AMP on only on a GPU', () => {
    assert.equal(toUltralyticsArgs(model, resources, 'cpu')['amp'], false);
    assert.equal(toUltralyticsArgs(model, resources, 'mps')['amp'], false);
    assert.equal(toUltralyticsArgs(model, resources, '0')['amp'], true);
    assert.equal(toUltralyticsArgs(model, resources, 'cuda:1')['amp'], true);
  });

  it('writes devices the Ultralytics way', () => {
    assert.equal(toUltralyticsArgs(model, resources, 'cuda:1')['device'], '1');
    assert.equal(normalizeDevice('cuda:0,cuda:1'), '0,1');
    assert.equal(normalizeDevice('0'), '0');
    assert.equal(normalizeDevice('CPU'), 'cpu');
    assert.equal(normalizeDevice('auto'), '');
    const auto = toUltralyticsArgs(model, resources, 'auto');
    assert.ok(!('device' in auto));
    assert.equal(auto['amp'], false);
  });

  it('leaves workers out when not given', () => {
    assert.ok(!('workers' in toUltralyticsArgs(model, undefined, 'cpu')));
  });

  it('produces JSON-safe values only', () => {
    const args = toUltralyticsArgs(model, resources, '0');
    assert.deepEqual(JSON.parse(JSON.stringify(args)), args);
  });

  it('keeps a run within resources.max_memory_gb: no RAM cache, fewer DataLoader workers', () => {
    const limited = toUltralyticsArgs(model, ResourcesSchema.parse({ workers: 8, max_memory_gb: 2.5 }), 'cpu');
    assert.equal(limited['workers'], 2, '1.5 GiB for the trainer, 0.5 GiB per worker');
    assert.equal(toUltralyticsArgs(model, ResourcesSchema.parse({ workers: 8, max_memory_gb: 1 }), 'cpu')['workers'], 0);
    assert.equal(toUltralyticsArgs(model, ResourcesSchema.parse({ workers: 3, max_memory_gb: 64 }), 'cpu')['workers'], 3, 'never more than asked');
    const config = { epochs: 1, batch: 4, imgsz: 64, cache: 'ram', workers: 8 };
    const fromConfig = toUltralyticsArgs(model, ResourcesSchema.parse({ max_memory_gb: 2 }), 'cpu', config);
    assert.equal(fromConfig['cache'], 'disk');
    assert.equal(fromConfig['workers'], 1);
    const unlimited = toUltralyticsArgs(model, ResourcesSchema.parse({}), 'cpu', config);
    assert.equal(unlimited['cache'], 'ram', 'no limit: the request as it is');
    assert.equal(unlimited['workers'], 8);
  });
});
