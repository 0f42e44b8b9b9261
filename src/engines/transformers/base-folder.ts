/**
 * Which task a local base model folder trains for, read from its files: a vision-language model
 * has a vision tower in its config (vision_config, as LLaVA, Qwen-VL, Idefics and PaliGemma
 * have) or a processor with an image processor; anything else is a causal LM. The worker makes
 * the same judgement (worker/engines/transformers/vlm_inference.py, is_vlm_folder) when it loads
 * the folder; here it lets submit refuse a mismatch while the folder is on this node.
 */
import fs from 'node:fs/promises';
import path from 'node:path';

const readJson = async (file: string): Promise<Record<string, unknown> | null> => {
  try {
    const value: unknown = JSON.parse(await fs.readFile(file, 'utf8'));
    return value && typeof value === 'object' && !Array.isArray(value) ? (value as Record<string, unknown>) : {};
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'ENOENT' ? null : {};
  }
};

/** null when the folder has no config.json (absent here, or not a model): nothing to judge. */
export async function folderTask(dir: string): Promise<'causal-lm' | 'vision-lm' | null> {
  const config = await readJson(path.join(dir, 'config.json'));
  if (config === null) return null;
  if ('vision_config' in config || config['model_type'] === 'llava') return 'vision-lm';
  const processor = await readJson(path.join(dir, 'processor_config.json'));
  if (processor && 'image_processor' in processor) return 'vision-lm';
  const preprocessor = await readJson(path.join(dir, 'preprocessor_config.json'));
  return preprocessor === null ? 'causal-lm' : 'vision-lm';
}
