/**
 * Hugging Face Hub model ids as a base model: `owner/name`, optionally `@revision`
 * ("TinyLlama/TinyLlama-1.1B-Chat-v1.0", "org/model@v1.0", "org/model@<commit sha>"). The
 * service downloads such a repo's snapshot once into workdir/hf-cache/<owner>/<name>@<revision>/
 * (pipeline/hub-snapshot.ts) and the worker loads that folder; the registry finds it there again
 * for exports. Pure: parsing and the cache path only.
 */
import path from 'node:path';

export interface HubRef {
  /** owner/name */
  repo: string;
  /** A branch, tag or commit; "main" when the id names none. */
  revision: string;
}

/**
 * The Hub's own rules for a name part (letters, digits, - _ .; no leading or trailing - or .; no
 * -- or ..), kept stricter than the Hub's where it is safe: each part is also one path segment
 * of the cache folder. A revision is one segment too (branches with "/" are not accepted).
 */
const PART = '(?!.*(?:--|\\.\\.))[A-Za-z0-9](?:[A-Za-z0-9_.-]{0,94}[A-Za-z0-9])?';
const REVISION = '[A-Za-z0-9](?:[A-Za-z0-9_.-]{0,98}[A-Za-z0-9])?';
/** The id as a pattern without anchors, for a JSON schema that accepts it among other forms. */
export const HUB_ID_SOURCE = `(${PART})/(${PART})(?:@(${REVISION}))?`;
export const HUB_ID = new RegExp(`^${HUB_ID_SOURCE}$`);

export const HUB_ID_HINT =
  'a Hugging Face Hub model id is owner/name or owner/name@revision (letters, digits, - _ . in each part; no .., no --, no leading or trailing - or .)';

/** The repo and revision of a Hub model id, or null when the text is not one. */
export function parseHubId(text: string): HubRef | null {
  const m = HUB_ID.exec(text);
  if (!m || m[3]?.includes('..')) return null;
  return { repo: `${m[1]}/${m[2]}`, revision: m[3] ?? 'main' };
}

/**
 * Written last into a complete snapshot folder; its mtime is when the snapshot was last used
 * (downloaded, or found in the cache by a job), which the retention sweep reads.
 */
export const SNAPSHOT_RECORD = '.trainhook-snapshot.json';

/** Where a snapshot of the repo at that revision is kept (one folder per repo and revision). */
export function hubCacheDir(workdir: string, ref: HubRef): string {
  const [owner, name] = ref.repo.split('/') as [string, string];
  return path.join(path.resolve(workdir), 'hf-cache', owner, `${name}@${ref.revision}`);
}
