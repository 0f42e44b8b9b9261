/**
 * LLaVA's conversation format, written beside jsonl datasets for tools that train from it
 * (a JSON array; `--data_path` the file, `--image_folder` the dataset's folder). A sample with
 * an image asks with `<image>` on a line of its own before the prompt; one without is a plain
 * text conversation.
 */
export type LlavaEntry = {
  id: string;
  image?: string;
  conversations: [{ from: 'human'; value: string }, { from: 'gpt'; value: string }];
};

export function llavaEntry(id: string, sample: { image?: string | null | undefined; prompt: string; completion: string }): LlavaEntry {
  const human = sample.image ? `<image>\n${sample.prompt}` : sample.prompt;
  return {
    id,
    ...(sample.image ? { image: sample.image } : {}),
    conversations: [
      { from: 'human', value: human },
      { from: 'gpt', value: sample.completion },
    ],
  };
}

export const llavaJson = (entries: readonly LlavaEntry[]): string => JSON.stringify(entries, null, 1);
