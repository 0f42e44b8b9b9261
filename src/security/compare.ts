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

/**
 * safeEqual for a fixed secret checked on every request (the API token): no hash per call.
 * Each candidate is copied into a buffer the size of the secret and compared whole, so the
 * time depends on neither the secret's content nor its length, as with hashing.
 */
export function secretMatcher(secret: string): (candidate: string) => boolean {
  const expected = Buffer.from(secret, 'utf8');
  const given = Buffer.alloc(expected.length);
  return (candidate) => {
    given.fill(0);
    given.write(candidate, 'utf8');
    const same = crypto.timingSafeEqual(given, expected);
    return same && Buffer.byteLength(candidate, 'utf8') === expected.length;
  };
}
