import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parse as parseYaml } from 'yaml';
import { Engines } from '../index.js';
import { ResourcesSchema, trainRequestSchema } from '../../jobs/request.js';

const TrainRequestSchema = trainRequestSchema(new Engines());
import { toUltralyticsArgs } from './args.js';
import { USER_KEYS, catalog, checkValue, keyRole, trainKeys, ultralyticsDefaults, type ConfigTask } from './catalog.js';
import { commandLine, parseCommandLine, pythonLiteral, shellSplit, smartValue } from './cli.js';
import { baseConfig, baseConfigText, resolveConfig, type ResolveInput } from './resolver.js';
import { configToWorkerArgs } from './config-args.js';

function resolved(input: ResolveInput) {
  const r = resolveConfig(input);
  assert.ok(r.ok, JSON.stringify(!r.ok && r.issues));
  return r.value;
}

function issuesOf(input: ResolveInput) {
  const r = resolveConfig(input);
  assert.ok(!r.ok, 'expected problems');
  return r.issues;
}

/** What Ultralytics' CLI would train with: its defaults under the line's key=value pairs. */
function argsFromCommand(task: ConfigTask, command: string): Record<string, unknown> {
  const parsed = parseCommandLine(command);
  assert.equal(parsed.task, task);
  assert.equal(parsed.mode, 'train');
  assert.equal(parsed.args['data'], 'data.yaml');
  const { data: _data, ...args } = parsed.args;
  return { ...ultralyticsDefaults(task), ...args };
}

const ROUND_TRIPS: { name: string; task: ConfigTask; mode: 'user' | 'developer'; overrides: Record<string, unknown> }[] = [
  { name: 'base config', task: 'detect', mode: 'developer', overrides: {} },
  { name: 'segment base config', task: 'segment', mode: 'developer', overrides: {} },
  {
    name: 'user preset',
    task: 'detect',
    mode: 'user',
    overrides: { model: 'yolo11s.pt', epochs: 3, imgsz: 320, batch: 8, amp: false, patience: 5, device: 'cuda:1' },
  },
  {
    name: 'developer: floats, lists, enums, nulls',
    task: 'detect',
    mode: 'developer',
    overrides: {
      optimizer: 'AdamW',
      lr0: 0.001,
      lrf: 1e-7,
      cos_lr: true,
      freeze: [0, 1, 2],
      time: 0.25,
      cache: 'ram',
      compile: 'reduce-overhead',
      conf: 0.05,
      end2end: false,
      batch: 0.7,
      warmup_epochs: 0.5,
      degrees: -10.5,
      model: 'https://example.com/weights/v2.pt',
      split: 'test',
      save_period: 5,
      device: null,
    },
  },
  {
    name: 'segment-only arguments, registry model, int freeze',
    task: 'segment',
    mode: 'developer',
    overrides: { overlap_mask: false, mask_ratio: 2, copy_paste: 0.3, copy_paste_mode: 'mixup', model: 'model:1f0e-ab', freeze: 10, cache: true, batch: -1 },
  },
];

describe('base configs', () => {
  for (const task of ['detect', 'segment'] as const) {
    it(`${task}: the YAML holds exactly the training arguments of the task, and resolves as is`, () => {
      const base = baseConfig('ultralytics', task);
      assert.deepEqual(Object.keys(base), trainKeys(task));
      const r = resolved({ task });
      assert.deepEqual(r.config, base);
      assert.deepEqual(r.changed, {});
      assert.equal(r.yaml, baseConfigText('ultralytics', task));
    });
  }

  it('every argument of default.yaml has a role; the user keys are training keys', () => {
    for (const arg of catalog().args) assert.notEqual(keyRole(arg.key, 'segment').role, 'unknown', arg.key);
    for (const key of USER_KEYS) assert.ok(trainKeys('detect').includes(key), key);
    assert.equal(keyRole('overlap_mask', 'detect').role, 'task');
    assert.equal(keyRole('overlap_mask', 'segment').role, 'train');
    assert.equal(keyRole('show', 'detect').role, 'other');
    assert.equal(keyRole('data', 'detect').role, 'server');
    assert.equal(keyRole('lr00', 'detect').role, 'unknown');
  });
});

describe('resolver round trips: resolved YAML and the yolo command line give the same arguments', () => {
  for (const c of ROUND_TRIPS) {
    it(c.name, () => {
      const r = resolved({ task: c.task, mode: c.mode, overrides: c.overrides });
      for (const [key, value] of Object.entries(c.overrides)) {
        assert.deepEqual(r.config[key], value, key);
      }
      // YAML → the same config (comments kept, values replaced)
      assert.deepEqual(parseYaml(r.yaml), r.config);
      assert.ok(r.yaml.includes('# (int) number of epochs to train for'), 'comments survive');
      // command line → the same config
      assert.deepEqual(argsFromCommand(c.task, r.command), r.config);
      assert.deepEqual(shellSplit(r.command).slice(1), r.argv);
      // resolving the resolved config again changes nothing
      const again = resolved({ task: c.task, mode: 'developer', base_config: r.config });
      assert.deepEqual(again.config, r.config);
      assert.equal(again.command, r.command);
    });
  }

  it('overrides land on base_config, and changed says what moved from the base file', () => {
    const r = resolved({ task: 'detect', mode: 'user', base_config: { epochs: 7, cos_lr: true }, overrides: { imgsz: 320 } });
    assert.equal(r.config['epochs'], 7);
    assert.equal(r.config['cos_lr'], true);
    assert.equal(r.config['imgsz'], 320);
    assert.deepEqual(Object.keys(r.changed).sort(), ['cos_lr', 'epochs', 'imgsz']);
    assert.deepEqual(r.changed['imgsz'], { from: 640, to: 320 });
  });

  it('device spellings are normalized so the config and the CLI agree', () => {
    assert.equal(resolved({ overrides: { device: '0' } }).config['device'], 'cuda:0');
    assert.equal(resolved({ overrides: { device: 1 } }).config['device'], 'cuda:1');
    assert.equal(resolved({ overrides: { device: 'CPU' } }).config['device'], 'cpu');
    assert.equal(resolved({ overrides: { device: 'auto' } }).config['device'], null);
  });

  it('values that smart_value would misread are quoted', () => {
    for (const v of ['0', 'true', 'None', '[1]', 'a b', "it's", '1e5']) {
      const lit = pythonLiteral(v);
      assert.equal(smartValue(shellSplit(`x=${lit.replace(/'/g, "'\\''").replace(/^/, "'").replace(/$/, "'")}`)[0]!.slice(2)), v, lit);
    }
    assert.equal(pythonLiteral(true), 'True');
    assert.equal(pythonLiteral(null), 'None');
    assert.equal(pythonLiteral([0, 1]), '[0,1]');
    assert.equal(pythonLiteral(1e-7), '1e-7');
    assert.equal(smartValue('1e-7'), 1e-7);
    assert.equal(smartValue('yolo11n.yaml'), 'yolo11n.yaml');
    assert.equal(commandLine('detect', { model: 'a b.pt' }), "yolo detect train data=data.yaml 'model='\\''a b.pt'\\'''");
  });
});

describe('resolver errors name the key', () => {
  const codeAt = (issues: { path: (string | number)[]; code: string }[], key: string) =>
    issues.find((i) => i.path.join('.') === `overrides.${key}`)?.code;

  it('user mode accepts only its preset', () => {
    const issues = issuesOf({ mode: 'user', overrides: { lr0: 0.02, epochs: 3 } });
    assert.equal(issues.length, 1);
    assert.deepEqual(issues[0]!.path, ['overrides', 'lr0']);
    assert.equal(issues[0]!.code, 'not_allowed');
    assert.match(issues[0]!.message, /developer-mode argument/);
  });

  it('unknown keys, with a suggestion', () => {
    const issues = issuesOf({ overrides: { lr00: 0.1, epoch: 3, hsvh: 0.1, totally_new: 1 } });
    assert.equal(codeAt(issues, 'lr00'), 'unknown_key');
    assert.match(issues.find((i) => i.path[1] === 'epoch')!.message, /did you mean epochs\?/);
    assert.match(issues.find((i) => i.path[1] === 'hsvh')!.message, /did you mean hsv_h\?/);
    assert.doesNotMatch(issues.find((i) => i.path[1] === 'totally_new')!.message, /did you mean/);
  });

  it('out of range and wrong types', () => {
    const bad: Record<string, unknown> = {
      epochs: 0,
      imgsz: 100,
      mosaic: 1.5,
      lr0: -0.1,
      batch: 2000,
      fraction: 0,
      device: 'cuda:0,1',
      optimizer: 'sgd',
      cache: 'gpu',
      freeze: [-1],
      amp: 'yes',
      patience: 1.5,
      degrees: 270,
      model: '../../etc/passwd',
      time: 0,
    };
    const issues = issuesOf({ overrides: bad });
    for (const key of Object.keys(bad)) assert.equal(codeAt(issues, key), 'invalid_value', key);
    assert.equal(issues.length, Object.keys(bad).length);
  });

  it('server-owned, other-task and non-training arguments', () => {
    const issues = issuesOf({
      task: 'detect',
      overrides: { data: 'coco8.yaml', name: 'x', resume: true, save: false, project: '/tmp', overlap_mask: true, kobj: 2, show: true, format: 'onnx', half: true },
    });
    for (const key of ['data', 'name', 'resume', 'save', 'project', 'overlap_mask', 'kobj', 'show', 'format', 'half']) {
      assert.equal(codeAt(issues, key), 'not_allowed', key);
    }
    assert.match(issues.find((i) => i.path[1] === 'overlap_mask')!.message, /segment task only/);
  });

  it('base_config problems have their own path', () => {
    const issues = issuesOf({ base_config: { epochs: -1 }, overrides: [] as unknown as Record<string, unknown> });
    assert.deepEqual(issues.map((i) => i.path.join('.')).sort(), ['base_config.epochs', 'overrides']);
  });

  it('checkValue: batch forms', () => {
    for (const ok of [1, 16, -1, 0.5]) assert.ok(checkValue('batch', ok).ok, String(ok));
    for (const bad of [0, -2, 1.5, 1025]) assert.ok(!checkValue('batch', bad).ok, String(bad));
  });
});

describe('a resolved config as a training job', () => {
  const config = resolved({ overrides: { epochs: 3, imgsz: 64, batch: 8, cos_lr: true, mosaic: 0, device: 'cpu', model: 'yolo11n.yaml' } }).config;

  it('worker arguments: the config as is, the slot decides device and AMP', () => {
    const args = configToWorkerArgs(config, 'cpu');
    assert.equal(args['model'], undefined, 'the model is the spec, not an argument');
    assert.equal(args['device'], 'cpu');
    assert.equal(args['amp'], false);
    assert.equal(args['exist_ok'], true);
    assert.equal(args['cos_lr'], true);
    assert.equal(args['epochs'], 3);
    assert.ok(!('time' in args), 'null arguments are left to Ultralytics');
    const gpu = configToWorkerArgs(config, 'cuda:1');
    assert.equal(gpu['device'], '1');
    assert.equal(gpu['amp'], true);
    assert.equal(configToWorkerArgs({ ...config, amp: false }, 'cuda:0')['amp'], false);
  });

  it('POST /train body with config: a model_config view for the rest of trainhook, the resolved config for the worker', () => {
    const body = TrainRequestSchema.parse({ name: 'exp-7', task: 'detect', config, dataset: { url: 'https://example.com/d.zip' } });
    const mc = body.model_config;
    assert.equal(mc.name, 'exp-7');
    assert.equal(mc.task, 'detect');
    assert.equal(mc.base_model, 'yolo11n.yaml');
    assert.equal(mc.epochs, 3);
    assert.equal(mc.batch_size, 8);
    assert.equal(mc.image_size, 64);
    assert.deepEqual(body.resolved_config, config);
    assert.equal(body.resources.device, 'cpu', "the config's device chooses the slot");
    assert.deepEqual(toUltralyticsArgs(mc as never, body.resources, 'cpu', body.resolved_config), configToWorkerArgs(config, 'cpu'));
    assert.ok(!('config' in body) && !('name' in body), 'normalized to model_config');
  });

  it('a partial config is resolved onto the base', () => {
    const body = TrainRequestSchema.parse({ name: 'p', config: { epochs: 5 }, dataset: { url: 'https://example.com/d.zip' } });
    assert.equal(body.resolved_config!['epochs'], 5);
    assert.equal(body.resolved_config!['patience'], 50);
    assert.equal(body.resources.device, 'auto');
  });

  it('config problems come back at config.<key>; contradictions and mixes are refused', () => {
    const url = 'https://example.com/d.zip';
    const paths = (body: unknown) => {
      const r = TrainRequestSchema.safeParse(body);
      assert.ok(!r.success);
      return r.error.issues.map((i: { path: PropertyKey[] }) => i.path.join('.')).sort();
    };
    assert.deepEqual(paths({ name: 'x', config: { lr0: 3, epochz: 1 }, dataset: { url } }), ['config.epochz', 'config.lr0']);
    assert.deepEqual(paths({ name: 'x', config: { device: 'cuda:0' }, resources: { device: 'cpu' }, dataset: { url } }), ['config.device']);
    assert.deepEqual(paths({ config: {}, dataset: { url } }), ['name']);
    assert.deepEqual(paths({ name: 'x', model_config: { name: 'x' }, config: {}, dataset: { url } }), ['config', 'name']);
    assert.deepEqual(paths({ dataset: { url } }), ['model_config']);
  });

  it('model_config requests are unchanged', () => {
    const body = TrainRequestSchema.parse({ model_config: { name: 'm', epochs: 2 }, dataset: { url: 'https://example.com/d.zip' } });
    assert.equal(body.resolved_config, undefined);
    const args = toUltralyticsArgs(body.model_config as never, ResourcesSchema.parse({ workers: 2 }), 'cpu', body.resolved_config);
    assert.equal(args['epochs'], 2);
    assert.equal(args['lr0'], 0.01);
  });
});
