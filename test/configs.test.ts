/**
 * Config presets and the resolver against the real thing (issue 6):
 *   - the argument catalog in the repository is what the pinned Ultralytics has;
 *   - resolved configs and their `yolo` command lines, read by Ultralytics' own CLI parser
 *     (cfg/__init__.py), give Ultralytics exactly the resolved arguments, and pass its checks;
 *   - values the resolver refuses for Ultralytics' own reasons, Ultralytics refuses too;
 *   - GET /api/v1/config/default and POST /api/v1/config/resolve over HTTP.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import { setupPython } from '../scripts/setup-python.mjs';
import { PRESETS_DIR, ULTRALYTICS_VERSION, catalog } from '../src/engines/ultralytics/catalog.js';
import { officialTask, officialWeights } from '../src/engines/ultralytics/base-models.js';
import { resolveConfig, type ResolveInput } from '../src/engines/ultralytics/resolver.js';
import { ROOT, api, startTestServer, tempDir, trainBody, type TestServer } from './helpers/server.js';

async function runPython(python: string, args: string[], input?: string): Promise<string> {
  const child = promisify(execFile)(python, args, {
    env: { ...process.env, YOLO_OFFLINE: 'true', YOLO_AUTOINSTALL: 'false', YOLO_CONFIG_DIR: tempDir('trainhook-cfg-') },
    encoding: 'utf8',
    maxBuffer: 16 * 1024 * 1024,
  });
  if (input !== undefined) {
    child.child.stdin!.end(input);
  }
  // The last line: Ultralytics may print a first-run notice before it.
  return (await child).stdout.trim().split('\n').pop()!;
}

/** Reads each case's command line the way `yolo` does and checks it with Ultralytics' own functions. */
const ULTRALYTICS_READS = `
import json, shlex, sys
from ultralytics.cfg import DEFAULT_CFG_DICT, check_cfg, check_dict_alignment, merge_equals_args, parse_key_value_pair
out = []
for case in json.load(sys.stdin):
    words = shlex.split(case['command'])[1:]
    task, mode, overrides = None, None, {}
    for a in merge_equals_args(words):
        if '=' in a:
            k, v = parse_key_value_pair(a)
            overrides[k] = v
        elif a in ('detect', 'segment'):
            task = a
        elif a == 'train':
            mode = a
    check_dict_alignment(DEFAULT_CFG_DICT, overrides)  # raises on a key Ultralytics does not know
    check_cfg(dict(overrides))                         # raises on a type or range Ultralytics refuses
    cfg = dict(case['config']); cfg.pop('model')
    check_cfg(cfg)                                     # the resolved config itself, as train() gets it
    merged = {**DEFAULT_CFG_DICT, **overrides}
    diffs = {k: [merged.get(k), v] for k, v in case['config'].items() if merged.get(k) != v}
    out.append({'task': task, 'mode': mode, 'data': overrides.get('data'), 'diffs': diffs})
print(json.dumps(out))
`;

/** Ultralytics' verdict on single values: null when check_cfg accepts, else the exception name. */
const ULTRALYTICS_CHECKS = `
import json, sys
from ultralytics.cfg import check_cfg
out = []
for key, value in json.load(sys.stdin):
    try:
        check_cfg({key: value})
        out.append(None)
    except Exception as e:
        out.append(type(e).__name__)
print(json.dumps(out))
`;

describe('configs against Ultralytics', () => {
  let python: string;
  before(async () => {
    python = await setupPython();
  });

  test(`the argument catalog is Ultralytics ${ULTRALYTICS_VERSION}'s default.yaml`, async () => {
    const fresh = JSON.parse(await runPython(python, [path.join(PRESETS_DIR, 'extract_args.py'), '--stdout']));
    assert.equal(fresh.ultralytics_version, ULTRALYTICS_VERSION, 'the engine requirements pin the catalog version');
    assert.deepEqual(catalog(), fresh);
  });

  test(`the official weight names are the release assets Ultralytics ${ULTRALYTICS_VERSION} downloads`, async () => {
    const fresh = JSON.parse(await runPython(python, [path.join(PRESETS_DIR, 'extract_assets.py'), '--stdout']));
    const stored = JSON.parse(fs.readFileSync(path.join(PRESETS_DIR, `assets-${ULTRALYTICS_VERSION}.json`), 'utf8'));
    assert.deepEqual(stored, fresh);
    // Every task has official weights, and the names a user types resolve to them.
    for (const task of ['detect', 'segment', 'classify', 'pose', 'obb']) assert.ok(officialWeights(task).length >= 10, task);
    assert.equal(officialTask('yolov8n.pt'), 'detect');
    assert.equal(officialTask('yolo11s-seg.pt'), 'segment');
    assert.equal(officialTask('yolov5s.pt'), 'detect', 'the u-renamed YOLOv5 weights');
    assert.equal(officialTask('my-weights.pt'), undefined);
  });

  test('resolved configs and their yolo lines give Ultralytics exactly the resolved arguments', async () => {
    const inputs: ResolveInput[] = [
      { task: 'detect', overrides: {} },
      { task: 'segment', overrides: {} },
      { task: 'detect', mode: 'user', overrides: { epochs: 3, imgsz: 320, batch: 8, amp: false, patience: 5, device: 'cuda:1', model: 'yolo11s.pt' } },
      {
        task: 'detect',
        overrides: {
          optimizer: 'AdamW', lr0: 0.001, lrf: 1e-7, cos_lr: true, freeze: [0, 1, 2], time: 0.25, cache: 'ram',
          compile: 'reduce-overhead', conf: 0.05, end2end: false, batch: 0.7, warmup_epochs: 0.5, degrees: -10.5,
          split: 'test', save_period: 5, mosaic: 0, close_mosaic: 0, rect: true, single_cls: true, nbs: 32, box: 5, cls_pw: 0.5,
        },
      },
      { task: 'segment', overrides: { overlap_mask: false, mask_ratio: 2, copy_paste: 0.3, copy_paste_mode: 'mixup', freeze: 10, cache: 'disk', batch: -1 } },
    ];
    const cases = inputs.map((input) => {
      const r = resolveConfig(input);
      assert.ok(r.ok, JSON.stringify(!r.ok && r.issues));
      return { command: r.value.command, config: r.value.config, task: r.value.task };
    });
    const read = JSON.parse(await runPython(python, ['-c', ULTRALYTICS_READS], JSON.stringify(cases))) as {
      task: string;
      mode: string;
      data: string;
      diffs: Record<string, unknown>;
    }[];
    for (const [i, got] of read.entries()) {
      assert.equal(got.task, cases[i]!.task);
      assert.equal(got.mode, 'train');
      assert.equal(got.data, 'data.yaml');
      assert.deepEqual(got.diffs, {}, `case ${i}: ${cases[i]!.command}`);
    }
  });

  test("what the resolver refuses for Ultralytics' reasons, Ultralytics refuses too; what it accepts, Ultralytics accepts", async () => {
    const refused: [string, unknown][] = [
      ['mosaic', 1.5], ['lr0', -0.1], ['hsv_h', 2], ['iou', 1.2], ['epochs', 2.5], ['val', 'yes'], ['cos_lr', 1], ['workers', '8'],
    ];
    const accepted: [string, unknown][] = [['mosaic', 0], ['lr0', 1], ['epochs', 7], ['amp', false], ['batch', 0.5], ['conf', null]];
    for (const [key, value] of refused) {
      const r = resolveConfig({ overrides: { [key]: value } });
      assert.ok(!r.ok, `${key}=${JSON.stringify(value)} refused here`);
    }
    for (const [key, value] of accepted) assert.ok(resolveConfig({ overrides: { [key]: value } }).ok, key);
    const verdicts = JSON.parse(await runPython(python, ['-c', ULTRALYTICS_CHECKS], JSON.stringify([...refused, ...accepted])));
    assert.ok(verdicts.slice(0, refused.length).every((v: string | null) => v !== null), JSON.stringify(verdicts));
    assert.deepEqual(verdicts.slice(refused.length), accepted.map(() => null));
  });
});

describe('config endpoints', () => {
  let server: TestServer;
  let call: ReturnType<typeof api>;
  before(async () => {
    server = await startTestServer({ env: { RUN_JOBS: 'false' } });
    call = api(server.url);
  });
  after(() => server.stop());

  test('GET /config/default: the base config, and the fields of each mode', async () => {
    const dev = await call('/api/v1/config/default?framework=ultralytics&task=detect&mode=developer');
    assert.equal(dev.status, 200, dev.text);
    assert.equal(dev.json.ultralytics_version, ULTRALYTICS_VERSION);
    assert.equal(dev.json.config.model, 'yolo11n.yaml');
    assert.equal(dev.json.yaml, fs.readFileSync(path.join(PRESETS_DIR, 'detect.yaml'), 'utf8'));
    assert.match(dev.json.command, /^yolo detect train data=data\.yaml model=yolo11n\.yaml patience=50$/);
    assert.deepEqual(dev.json.editable, Object.keys(dev.json.config));
    const lr0 = dev.json.fields.find((f: { key: string }) => f.key === 'lr0');
    assert.deepEqual({ type: lr0.type, min: lr0.min, max: lr0.max, value: lr0.value }, { type: 'number', min: 0, max: 1, value: 0.01 });
    assert.match(lr0.description, /initial learning rate/);

    const user = await call('/api/v1/config/default?task=segmentation&mode=user');
    assert.equal(user.json.task, 'segment');
    assert.deepEqual(user.json.editable, ['model', 'epochs', 'imgsz', 'batch', 'amp', 'patience', 'device']);
    assert.deepEqual(user.json.fields.map((f: { key: string }) => f.key), user.json.editable);
    assert.equal(user.json.config.model, 'yolo11n-seg.yaml');
    assert.equal(user.json.config.overlap_mask, true);

    const pose = await call('/api/v1/config/default?task=pose');
    assert.equal(pose.status, 200, 'every Ultralytics task has a base config');
    assert.equal(pose.json.config.model, 'yolo11n-pose.yaml');
    assert.equal(pose.json.config.kobj, 1);
    assert.ok(!('overlap_mask' in pose.json.config), 'a segment-only key is not in the pose base');
    assert.equal((await call('/api/v1/config/default?task=depth')).status, 400);
    // A task an engine trains but has no base config for (its schema's default base model is of
    // another task) is 404, not a failed parse.
    const none = await call('/api/v1/config/default?framework=rfdetr&task=segment');
    assert.equal(none.status, 404, none.text);
    assert.equal(none.json.error.code, 'CONFIG_NOT_FOUND');
    assert.equal((await call('/api/v1/config/default?framework=rfdetr&task=detect')).status, 200);
    assert.equal((await call('/api/v1/config/default?mode=expert')).status, 400);
    assert.equal((await call('/api/v1/config/default?framework=mmdet')).status, 400);
    assert.equal((await api(server.url, '')('/api/v1/config/default')).status, 401);
  });

  test('POST /config/resolve: config, YAML, command; problems by key path', async () => {
    const ok = await call('/api/v1/config/resolve', {
      method: 'POST',
      json: { framework: 'ultralytics', task: 'detect', mode: 'user', overrides: { epochs: 30, imgsz: 416, device: 'cpu' } },
    });
    assert.equal(ok.status, 200, ok.text);
    assert.equal(ok.json.config.epochs, 30);
    assert.match(ok.json.yaml, /^epochs: 30 # \(int\) number of epochs to train for$/m);
    assert.equal(ok.json.command, 'yolo detect train data=data.yaml model=yolo11n.yaml epochs=30 patience=50 imgsz=416 device=cpu');
    assert.deepEqual(ok.json.argv, ok.json.command.split(' ').slice(1));
    assert.deepEqual(ok.json.changed.imgsz, { from: 640, to: 416 });

    const bad = await call('/api/v1/config/resolve', {
      method: 'POST',
      json: { mode: 'user', overrides: { lr0: 0.1, epochs: 0, bogus: true } },
    });
    assert.equal(bad.status, 400);
    assert.equal(bad.json.error.code, 'CONFIG_INVALID');
    assert.deepEqual(
      bad.json.error.details.map((d: { path: string[]; code: string }) => `${d.path.join('.')}:${d.code}`).sort(),
      ['overrides.bogus:unknown_key', 'overrides.epochs:invalid_value', 'overrides.lr0:not_allowed'],
    );
    const unknownField = await call('/api/v1/config/resolve', { method: 'POST', json: { overrides: {}, extra: 1 } });
    assert.equal(unknownField.status, 400);
  });

  test('POST /train with an invalid config: 400 naming config.<key>', async () => {
    const r = await call('/api/v1/train', {
      method: 'POST',
      json: { ...trainBody(), model_config: undefined, name: 'x', task: 'segment', config: { mask_ratio: 0, show: true } },
    });
    assert.equal(r.status, 400, r.text);
    assert.deepEqual(r.json.error.details.map((d: { path: string[] }) => d.path.join('.')).sort(), ['config.mask_ratio', 'config.show']);
  });
});
