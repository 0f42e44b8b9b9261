/**
 * Signed, expiring download links for registry files (weights and exports), on the same key
 * and MAC as the job downloads (src/security/links.ts):
 *
 *   /downloads/models/<model id>/<file name>?exp=<unix seconds>&sig=<base64url HMAC-SHA256>
 */
import { linkSignature, verifyDownloadLink, type LinkCheck, type SignedLink } from '../security/links.js';

export function modelDownloadPath(modelId: string, fileName: string): string {
  return `/downloads/models/${modelId}/${encodeURIComponent(fileName)}`;
}

export function signModelLink(opts: {
  key: string;
  baseUrl: string;
  modelId: string;
  fileName: string;
  ttlSeconds: number;
  nowSeconds?: number;
}): SignedLink {
  const exp = (opts.nowSeconds ?? Math.floor(Date.now() / 1000)) + opts.ttlSeconds;
  const path = modelDownloadPath(opts.modelId, opts.fileName);
  return {
    url: `${opts.baseUrl.replace(/\/+$/, '')}${path}?exp=${exp}&sig=${linkSignature(opts.key, path, exp)}`,
    expires_at: new Date(exp * 1000).toISOString().replace(/\.\d{3}Z$/, 'Z'),
  };
}

export function verifyModelLink(opts: {
  key: string;
  modelId: string;
  fileName: string;
  exp: string | undefined;
  sig: string | undefined;
}): LinkCheck {
  return verifyDownloadLink({ key: opts.key, path: modelDownloadPath(opts.modelId, opts.fileName), exp: opts.exp, sig: opts.sig });
}
