/**
 * Writes a prepared dataset's folder as a ZIP with reproducible bytes (sorted entries, a fixed
 * mtime): the same conversion or split gives the same sha256, so the store and the datasets
 * table see it as the same dataset instead of a copy.
 */
import crypto from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { readdir, stat } from 'node:fs/promises';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import yazl from 'yazl';

const MTIME = new Date('2024-01-01T00:00:00Z');

async function listFiles(dir: string, rel = ''): Promise<string[]> {
  const entries = (await readdir(path.join(dir, rel), { withFileTypes: true })).sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  const out: string[] = [];
  for (const e of entries) {
    const r = rel ? `${rel}/${e.name}` : e.name;
    if (e.isDirectory()) out.push(...(await listFiles(dir, r)));
    else if (e.isFile()) out.push(r);
  }
  return out;
}

export async function zipFolder(dir: string, zipPath: string): Promise<{ sha256: string; bytes: number }> {
  const zip = new yazl.ZipFile();
  for (const rel of await listFiles(dir)) {
    // Images are compressed already: deflating them again costs time for nothing.
    zip.addFile(path.join(dir, rel), rel, { mtime: MTIME, mode: 0o100644, compress: !/\.(png|jpe?g|webp)$/i.test(rel) });
  }
  zip.end();
  await pipeline(zip.outputStream, createWriteStream(zipPath));
  const hash = crypto.createHash('sha256');
  for await (const chunk of createReadStream(zipPath)) hash.update(chunk as Buffer);
  return { sha256: hash.digest('hex'), bytes: (await stat(zipPath)).size };
}
