/**
 * A base model named as a local folder (a `save_pretrained` folder under HF_MODELS_DIR): the
 * name must be one path segment, so a request names a folder of the server's and never a path of
 * its disk. The pipeline resolves it for the worker; an engine may read it at submit.
 */
import path from 'node:path';

/** The folder's path under root, or null when the name is not a single safe segment. */
export function modelFolder(root: string, name: string): string | null {
  const base = path.resolve(root);
  const dir = path.join(base, name);
  return /^\w[\w.-]*$/.test(name) && !name.includes('..') && path.dirname(dir) === base ? dir : null;
}
