/**
 * Prepared datasets: made by trainhook from something sent to it, then stored like an upload
 * (a ZIP in the shared store, a row of the datasets table), so listing, deleting and training
 * on them by id work the same way.
 *
 *   convert   a SAM2 annotation export ZIP → a vision-language jsonl dataset (sam2/convert.ts)
 *   split     a stored jsonl dataset → a new one with train/val(/test) files (and each as LLaVA
 *             conversations, llava_<split>.json) and the same
 *             images, its parent_id the dataset it came from
 *   validate  a stored jsonl dataset → a quality report, kept on its row
 */
import { copyFile, mkdir, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { Readable } from 'node:stream';
import type { Config } from '../core/config.js';
import type { DatasetRow } from '../db/schema.js';
import { extractZip } from './extract.js';
import type { DatasetFormat } from './formats.js';
import { PrepareError } from './prepare/errors.js';
import { readStoredSamples, safeImagePath, type StoredSample } from './prepare/samples.js';
import { splitSamples, type Ratios, type SplitStrategy } from './prepare/split.js';
import { DEFAULT_CONTEXT, DEFAULT_IMAGE_TOKENS, modelContext, validateSamples, type ValidationLevel, type ValidationReport } from './prepare/validate.js';
import { zipFolder } from './prepare/zip.js';
import { convertSam2Export } from './sam2/convert.js';
import type { Template } from './sam2/templates.js';
import type { DatasetStore } from './store.js';
import type { UploadedDatasets, UploadResult } from './uploads.js';
import { llavaEntry, llavaJson } from './llava.js';

/** Token counts of texts by a base model folder's tokenizer (a Python worker, given by the composition root). */
export type CountTokens = (baseModelFolder: string, texts: string[]) => Promise<number[]>;

/** What a prepared dataset is checked for when it is stored: a task whose engine reads jsonl. */
export type PreparedTarget = { task: string; formats: readonly DatasetFormat[] };

export class PreparedDatasets {
  constructor(
    private readonly opts: { store: DatasetStore; uploads: UploadedDatasets; limits: Config['dataset']; hfModelsDir: string; countTokens?: CountTokens | null },
  ) {}

  /** Writes a folder as a ZIP into the store's temporary folder and adopts it as a dataset. */
  private async store(
    dir: string,
    opts: PreparedTarget & { name: string | null; origin: DatasetRow['origin']; parentId?: string; stats: Record<string, unknown>; signal?: AbortSignal | undefined },
  ): Promise<UploadResult> {
    const zip = this.opts.store.tmpPath('.zip');
    const { sha256, bytes } = await zipFolder(dir, zip);
    return this.opts.uploads.adopt({ file: zip, sha256, bytes }, { ...opts, requested: 'jsonl' });
  }

  /** A SAM2 export (the raw ZIP body) converted and stored. PrepareError SAM2_INVALID when it cannot be. */
  async convert(
    body: Readable,
    opts: PreparedTarget & { name: string | null; templates?: readonly Template[] | undefined; signal?: AbortSignal | undefined },
  ): Promise<UploadResult & { stats: Record<string, unknown> }> {
    const { store, limits } = this.opts;
    const received = await store.receive(body, limits.maxDownloadBytes);
    const work = store.tmpPath('.convert');
    try {
      const extracted = path.join(work, 'export');
      try {
        await extractZip(received.file, extracted, limits, { signal: opts.signal });
      } finally {
        await rm(received.file, { force: true });
      }
      const out = path.join(work, 'dataset');
      await mkdir(out, { recursive: true });
      const stats = await convertSam2Export(extracted, out, { templates: opts.templates, signal: opts.signal });
      const result = await this.store(out, { ...opts, origin: 'convert', stats });
      return { ...result, stats: result.row.stats ?? stats };
    } finally {
      await rm(work, { recursive: true, force: true });
    }
  }

  private async samplesOf(row: DatasetRow): Promise<{ root: string; samples: StoredSample[] }> {
    if (row.format !== 'jsonl') throw new PrepareError('DATASET_NOT_JSONL', `dataset ${row.id} is a ${row.format} dataset: validate and split read jsonl datasets (convert one with POST /api/v1/datasets/convert)`);
    return readStoredSamples(this.opts.store.filesDir(row.sha256));
  }

  async validate(row: DatasetRow, opts: { level: ValidationLevel; baseModel?: string | undefined; maxTokens?: number | undefined; imageTokens?: number | undefined }): Promise<ValidationReport> {
    const { root, samples } = await this.samplesOf(row);
    let context = { max_tokens: opts.maxTokens ?? DEFAULT_CONTEXT, source: opts.maxTokens ? 'request' : 'default' };
    if (opts.baseModel) {
      const declared = await modelContext(this.opts.hfModelsDir, opts.baseModel);
      // The request's max_tokens (what the job will train with) wins over what the model could take.
      if (declared && !opts.maxTokens) context = { max_tokens: declared, source: `base model ${opts.baseModel}` };
    }
    // strict with a base model measures with its tokenizer (a Python start: seconds); basic estimates.
    const measure = opts.level === 'strict' && opts.baseModel && this.opts.countTokens;
    const tokens = measure ? await this.opts.countTokens!(opts.baseModel!, samples.map((s) => s.prompt + s.completion)) : undefined;
    const report = validateSamples(samples, root, {
      level: opts.level,
      context: { ...context, tokens: tokens ? 'measured' : 'estimated', image_tokens: opts.imageTokens ?? DEFAULT_IMAGE_TOKENS },
      tokens,
    });
    await this.opts.uploads.saveValidation(row.id, report as unknown as Record<string, unknown>);
    return report;
  }

  async split(
    row: DatasetRow,
    opts: PreparedTarget & { strategy: SplitStrategy; ratios: Ratios; seed: number; name: string | null; signal?: AbortSignal | undefined },
  ): Promise<UploadResult & { stats: Record<string, unknown> }> {
    const { root, samples } = await this.samplesOf(row);
    const { parts, stats } = splitSamples(samples, opts);
    const out = this.opts.store.tmpPath('.split');
    try {
      await mkdir(out, { recursive: true });
      const copied = new Set<string>();
      for (const [part, list] of Object.entries(parts)) {
        if (list.length === 0) continue;
        for (const s of list) {
          if (!s.image || copied.has(s.image)) continue;
          const rel = safeImagePath(s.image);
          // The dataset was checked when it was stored; a path that leaves it is never followed.
          if (!rel) throw new PrepareError('DATASET_NOT_JSONL', `${s.split}.jsonl:${s.line}: image "${s.image}" leaves the dataset`);
          await mkdir(path.dirname(path.join(out, rel)), { recursive: true });
          await copyFile(path.join(root, rel), path.join(out, rel));
          copied.add(s.image);
        }
        await writeFile(path.join(out, `${part}.jsonl`), `${list.map((s) => JSON.stringify(s.value)).join('\n')}\n`);
        await writeFile(path.join(out, `llava_${part}.json`), llavaJson(list.map((s, i) => llavaEntry(`${part}-${i}`, s))));
      }
      const result = await this.store(out, {
        ...opts,
        name: opts.name ?? (row.name ? `${row.name} (${opts.strategy} split)` : null),
        origin: 'split',
        parentId: row.id,
        stats: { ...stats, parent_id: row.id },
      });
      return { ...result, stats: result.row.stats ?? stats };
    } finally {
      await rm(out, { recursive: true, force: true });
    }
  }
}
