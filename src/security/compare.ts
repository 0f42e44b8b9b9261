import crypto from 'node:crypto';

/**
 * Constant-time string comparison. Both sides are hashed first so that neither the content
 * nor the length of the secret leaks through timing.
 */
export function safeEqual(a: string, b: string): boolean {
  const ha = crypto.createHash('sha256').update(a, 'utf8').digest();
  const hb = crypto.createHash('sha256').update(b, 'utf8').digest();
  return crypto.timingSafeEqual(ha, hb);
}
