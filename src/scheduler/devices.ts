/**
 * The devices that get a training slot each: every GPU nvidia-smi lists, or the CPU when there
 * is none. DEVICES=cpu or DEVICES=cuda:0,cuda:1 overrides discovery.
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';

const run = promisify(execFile);

export async function listGpus(): Promise<{ index: number; name: string }[]> {
  try {
    const { stdout } = await run('nvidia-smi', ['--query-gpu=index,name', '--format=csv,noheader'], {
      timeout: 5000,
    });
    return stdout
      .trim()
      .split('\n')
      .filter(Boolean)
      .map((line) => {
        const [index, ...name] = line.split(',');
        return { index: Number(index), name: name.join(',').trim() };
      })
      .filter((g) => Number.isInteger(g.index));
  } catch {
    return [];
  }
}

export async function resolveDevices(setting: string): Promise<string[]> {
  if (setting.trim() !== 'auto') {
    return setting
      .split(',')
      .map((d) => d.trim())
      .filter(Boolean)
      .map((d) => (/^\d+$/.test(d) ? `cuda:${d}` : d));
  }
  const gpus = await listGpus();
  return gpus.length ? gpus.map((g) => `cuda:${g.index}`) : ['cpu'];
}
