/**
 * Quality checks of a stored jsonl dataset before training on it, at two levels:
 *
 *   images_readable     every `image` path stays inside the dataset and is a readable image
 *   token_lengths       prompt + answer (+ the image's tokens) fit the model's context
 *   duplicates          the same sample twice, and samples or images on both sides of the split
 *   class_balance       samples per class (meta.classes), the rarest against the commonest
 *   answer_consistency  one image and one question answered two different ways
 *
 * `basic` reports most findings as warnings; `strict` makes over-long samples, train/val
 * leaks and inconsistent answers errors. `strict` with a base model folder under HF_MODELS_DIR
 * counts tokens with that model's tokenizer (the caller measures them) and takes the context
 * length from its config; otherwise counts are estimated (characters / 4, a tokenizer-free rule
 * that errs long for English). An image counts as `image_tokens` either way.
 */
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { checkImage, imageScratch } from '../images.js';
import { PrepareError } from './errors.js';
import { safeImagePath, type StoredSample } from './samples.js';

export type CheckStatus = 'passed' | 'warning' | 'error';
export type Check = { name: string; status: CheckStatus; message: string; details?: Record<string, unknown> };
export type ValidationLevel = 'basic' | 'strict';

export type ValidationReport = {
  status: 'passed' | 'passed_with_warnings' | 'failed';
  level: ValidationLevel;
  checked_at: string;
  context: { max_tokens: number; source: string; tokens: 'estimated' | 'measured'; image_tokens: number };
  report: {
    summary: { total_samples: number; issues_found: number; warnings: number; errors: number };
    checks: Check[];
    recommendations: string[];
  };
};

export const DEFAULT_CONTEXT = 2048;
/** LLaVA-1.5's image: 24x24 patches of a 336-pixel CLIP view. */
export const DEFAULT_IMAGE_TOKENS = 576;
const CLASS_IMBALANCE = 10;
const EXAMPLES = 10;

export const estimateTokens = (text: string) => Math.ceil(text.length / 4);

/** The context length a base model folder declares (config.json, tokenizer_config.json), or null. */
export async function modelContext(hfModelsDir: string, folder: string): Promise<number | null> {
  if (!/^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$/.test(folder)) throw new PrepareError('BASE_MODEL_NOT_FOUND', `base_model must be one folder name under HF_MODELS_DIR, not "${folder}"`);
  const read = async (file: string) => JSON.parse(await readFile(path.join(hfModelsDir, folder, file), 'utf8')) as Record<string, unknown>;
  let config: Record<string, unknown>;
  try {
    config = await read('config.json');
  } catch {
    throw new PrepareError('BASE_MODEL_NOT_FOUND', `no base model folder "${folder}" with a config.json under HF_MODELS_DIR`, { base_model: folder });
  }
  const text = (config['text_config'] as Record<string, unknown> | undefined) ?? config;
  const fromConfig = [text['max_position_embeddings'], config['max_position_embeddings']].find((v): v is number => typeof v === 'number' && v > 0);
  if (fromConfig) return fromConfig;
  const tok = await read('tokenizer_config.json').catch(() => ({}) as Record<string, unknown>);
  const m = tok['model_max_length'];
  // transformers writes a huge sentinel (1e30) when the tokenizer has no limit.
  return typeof m === 'number' && m > 0 && m < 1e7 ? m : null;
}

function imagesCheck(samples: readonly StoredSample[], root: string): Check {
  const scratch = imageScratch();
  const problems: Array<{ split: string; line: number; image: string; message: string }> = [];
  const seen = new Map<string, string | null>();
  let withImage = 0;
  for (const s of samples) {
    if (s.image === null) continue;
    withImage++;
    let message = seen.get(s.image);
    if (message === undefined) {
      const rel = safeImagePath(s.image);
      if (!rel) message = 'the path must be relative to the dataset, without ".."';
      else {
        const r = checkImage(path.join(root, rel), scratch);
        message = r.ok ? null : r.message;
      }
      seen.set(s.image, message);
    }
    if (message) problems.push({ split: s.split, line: s.line, image: s.image, message });
  }
  if (problems.length) {
    return { name: 'images_readable', status: 'error', message: `${problems.length} of ${withImage} samples name an image that cannot be read`, details: { problems: problems.slice(0, EXAMPLES), total: problems.length } };
  }
  return { name: 'images_readable', status: 'passed', message: `${seen.size} images, all readable (${samples.length - withImage} text-only samples)`, details: { images: seen.size } };
}

function tokensCheck(samples: readonly StoredSample[], level: ValidationLevel, context: ValidationReport['context'], measured?: readonly number[]): Check {
  const over: Array<{ split: string; line: number; tokens: number }> = [];
  let longest = 0;
  for (const [i, s] of samples.entries()) {
    const text = measured?.[i] ?? estimateTokens(s.prompt) + estimateTokens(s.completion);
    const n = text + (s.image ? context.image_tokens : 0);
    longest = Math.max(longest, n);
    if (n > context.max_tokens) over.push({ split: s.split, line: s.line, tokens: n });
  }
  const details = { longest: longest, counted: context.tokens, max_tokens: context.max_tokens, over: over.length, examples: over.slice(0, EXAMPLES) };
  if (over.length) {
    return { name: 'token_lengths', status: level === 'strict' ? 'error' : 'warning', message: `${over.length} samples are ${context.tokens === 'measured' ? 'longer' : 'estimated longer'} than the ${context.max_tokens}-token context and would be cut`, details };
  }
  return { name: 'token_lengths', status: 'passed', message: `the longest sample is about ${longest} tokens, within ${context.max_tokens}`, details };
}

function duplicatesCheck(samples: readonly StoredSample[], level: ValidationLevel): Check {
  const key = (s: StoredSample) => JSON.stringify([s.image, s.prompt, s.completion]);
  const bySample = new Map<string, Set<string>>();
  let repeated = 0;
  for (const s of samples) {
    const k = key(s);
    const splits = bySample.get(k);
    if (splits) repeated++;
    bySample.set(k, (splits ?? new Set()).add(s.split));
  }
  const leaked = [...bySample.values()].filter((sp) => sp.has('train') && (sp.has('val') || sp.has('test'))).length;
  const imageSplits = new Map<string, Set<string>>();
  for (const s of samples) if (s.image) imageSplits.set(s.image, (imageSplits.get(s.image) ?? new Set()).add(s.split));
  const sharedImages = [...imageSplits].filter(([, sp]) => sp.has('train') && (sp.has('val') || sp.has('test'))).map(([i]) => i);
  const details = { repeated_samples: repeated, train_val_duplicates: leaked, images_in_train_and_val: sharedImages.length, image_examples: sharedImages.slice(0, EXAMPLES) };
  if (leaked || sharedImages.length) {
    return {
      name: 'duplicates',
      status: level === 'strict' ? 'error' : 'warning',
      message: `${leaked} samples and ${sharedImages.length} images are on both sides of the train/validation split: validation would measure memory`,
      details,
    };
  }
  if (repeated) return { name: 'duplicates', status: 'warning', message: `${repeated} samples repeat an earlier one`, details };
  return { name: 'duplicates', status: 'passed', message: 'no repeated samples, no image on both sides of the split', details };
}

function classBalanceCheck(samples: readonly StoredSample[]): Check {
  const counts: Record<string, number> = {};
  for (const s of samples) for (const c of s.meta.classes ?? []) counts[c] = (counts[c] ?? 0) + 1;
  const values = Object.values(counts);
  if (values.length === 0) return { name: 'class_balance', status: 'passed', message: 'no class metadata (meta.classes) to weigh', details: { class_distribution: counts } };
  const max = Math.max(...values), min = Math.min(...values);
  const ratio = max / min;
  const details = { class_distribution: counts, imbalance_ratio: Number(ratio.toFixed(2)) };
  if (ratio > CLASS_IMBALANCE) {
    const rare = Object.keys(counts).filter((c) => counts[c]! * CLASS_IMBALANCE < max).sort();
    return { name: 'class_balance', status: 'warning', message: `the commonest class has ${ratio.toFixed(1)}x the samples of the rarest (${rare.join(', ')})`, details: { ...details, rare_classes: rare } };
  }
  return { name: 'class_balance', status: 'passed', message: `${values.length} classes, the commonest at most ${ratio.toFixed(1)}x the rarest`, details };
}

function consistencyCheck(samples: readonly StoredSample[], level: ValidationLevel): Check {
  const answers = new Map<string, Set<string>>();
  for (const s of samples) {
    const k = JSON.stringify([s.image, s.prompt]);
    answers.set(k, (answers.get(k) ?? new Set()).add(s.completion.trim()));
  }
  const conflicting = [...answers].filter(([, a]) => a.size > 1);
  const examples = conflicting.slice(0, EXAMPLES).map(([k, a]) => {
    const [image, prompt] = JSON.parse(k) as [string | null, string];
    return { image, prompt, answers: [...a] };
  });
  if (conflicting.length) {
    return { name: 'answer_consistency', status: level === 'strict' ? 'error' : 'warning', message: `${conflicting.length} image/question pairs have different answers`, details: { conflicting: conflicting.length, examples } };
  }
  return { name: 'answer_consistency', status: 'passed', message: 'every image/question pair has one answer', details: { pairs: answers.size } };
}

const ADVICE: Record<string, string> = {
  images_readable: 'Re-export the frames that cannot be read (JPEG or PNG, at least 10 px a side) and convert again.',
  token_lengths: 'Shorten the longest answers, split frames with many objects into several questions, or train with a longer context.',
  duplicates: 'Split with POST /api/v1/datasets/{id}/split and strategy "temporal", which keeps every frame of a video on one side.',
  class_balance: 'Annotate more frames of the rare classes, or drop frames of the common ones, before converting.',
  answer_consistency: 'Fix the annotations that disagree: one image and question should have one answer.',
};

export function validateSamples(
  samples: readonly StoredSample[],
  root: string,
  opts: { level: ValidationLevel; context: ValidationReport['context']; tokens?: readonly number[] | undefined; now?: Date },
): ValidationReport {
  const checks = [
    imagesCheck(samples, root),
    tokensCheck(samples, opts.level, opts.context, opts.tokens),
    duplicatesCheck(samples, opts.level),
    classBalanceCheck(samples),
    consistencyCheck(samples, opts.level),
  ];
  const errors = checks.filter((c) => c.status === 'error').length;
  const warnings = checks.filter((c) => c.status === 'warning').length;
  const recommendations = checks.filter((c) => c.status !== 'passed').map((c) => ADVICE[c.name]!);
  if (samples.some((s) => s.split === 'data')) recommendations.push('The dataset is one data.jsonl: split it (strategy "temporal" for video frames) so validation does not see the training videos.');
  return {
    status: errors ? 'failed' : warnings ? 'passed_with_warnings' : 'passed',
    level: opts.level,
    checked_at: (opts.now ?? new Date()).toISOString(),
    context: opts.context,
    report: { summary: { total_samples: samples.length, issues_found: errors + warnings, warnings, errors }, checks, recommendations },
  };
}
