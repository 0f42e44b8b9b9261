/**
 * What a callback_secret may be, and the HMAC key it stands for. Two formats:
 *
 *   whsec_<base64>  a Standard Webhooks secret: the key is the base64 after the prefix, decoded
 *                   exactly (standard alphabet, padded: what every Standard Webhooks library
 *                   reads alike; they refuse much of the rest, "incorrect characters for
 *                   decoding", "Secret can't be empty", and read the rest in their own ways)
 *   anything else   a plain secret: the key is its bytes (receivers that compare the
 *                   X-Callback-Secret header hold secrets such as `sk_live_…`)
 *
 * Two levels of checking, on purpose:
 *   - newCallbackSecretProblem: what POST /api/v1/train accepts. A key long enough to be one
 *     (24 to 64 random bytes for whsec_, the Standard Webhooks range; 24+ characters for a plain
 *     secret), and a plain secret of printable ASCII only, since it travels in a header.
 *   - callbackSigningKey / unusableCallbackSecret: what can be signed with and sent at all. A
 *     job stored before the first rule existed may hold a weak but working secret, and its
 *     receiver was built with it: that still delivers. A secret that can never work (an empty
 *     or non-base64 whsec_ key, a header value HTTP cannot carry) fails its deliveries at once.
 * Messages never quote the secret.
 */

export const WHSEC_PREFIX = 'whsec_';
export const WHSEC_MIN_BYTES = 24;
export const WHSEC_MAX_BYTES = 64;
export const PLAIN_MIN_CHARS = 24;
export const PLAIN_MAX_CHARS = 500;

export const VALID_CALLBACK_SECRET =
  `a valid callback_secret is either a Standard Webhooks secret, "${WHSEC_PREFIX}" followed by the standard ` +
  `base64 (with padding) of ${WHSEC_MIN_BYTES} to ${WHSEC_MAX_BYTES} random bytes (e.g. "${WHSEC_PREFIX}" + ` +
  `the output of \`openssl rand -base64 32\`), or a plain string of ${PLAIN_MIN_CHARS} to ${PLAIN_MAX_CHARS} ` +
  'printable ASCII characters without spaces (it is sent in the X-Callback-Secret header)';

/** Standard base64, padded to a multiple of 4: what base64 encoders print and every verifier reads. */
const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;
/** Printable ASCII without space: survives every HTTP stack unchanged. */
const PRINTABLE_ASCII = /^[\x21-\x7e]*$/;

export type SigningKey = { ok: true; key: Buffer } | { ok: false; problem: string };

/** The HMAC key a secret stands for, decoded exactly; never an empty or partly decoded key. */
export function callbackSigningKey(secret: string): SigningKey {
  if (secret.startsWith(WHSEC_PREFIX)) {
    const encoded = secret.slice(WHSEC_PREFIX.length);
    if (!encoded) return { ok: false, problem: `nothing follows "${WHSEC_PREFIX}": the key would be empty` };
    const key = Buffer.from(encoded, 'base64');
    // The round trip refuses what Buffer would decode leniently: other characters (skipped),
    // base64url, missing padding, stray bits in the last character.
    if (!BASE64.test(encoded) || key.toString('base64') !== encoded) {
      return { ok: false, problem: `what follows "${WHSEC_PREFIX}" is not valid standard base64` };
    }
    return { ok: true, key };
  }
  if (!secret) return { ok: false, problem: 'the secret is empty' };
  return { ok: true, key: Buffer.from(secret, 'utf8') };
}

/**
 * Why a stored secret can never deliver (null: it can). `sentInHeader`: the secret also goes
 * out as X-Callback-Secret, whose value HTTP carries only as Latin-1 without control
 * characters, and trims of surrounding whitespace.
 */
export function unusableCallbackSecret(secret: string, sentInHeader: boolean): string | null {
  const key = callbackSigningKey(secret);
  if (!key.ok) return key.problem;
  if (sentInHeader) {
    const bad = [...secret].findIndex((ch) => {
      const c = ch.codePointAt(0)!;
      return c > 0xff || (c < 0x20 && c !== 0x09) || c === 0x7f;
    });
    if (bad >= 0) return `character ${bad + 1} cannot be sent in the X-Callback-Secret header`;
    if (secret.trim() !== secret) return 'surrounding whitespace would be stripped from the X-Callback-Secret header';
  }
  return null;
}

/** Why POST /api/v1/train refuses a callback_secret (null: accepted). */
export function newCallbackSecretProblem(secret: string): string | null {
  const key = callbackSigningKey(secret);
  if (!key.ok) return key.problem;
  if (secret.startsWith(WHSEC_PREFIX)) {
    const n = key.key.length;
    if (n < WHSEC_MIN_BYTES || n > WHSEC_MAX_BYTES) {
      return `the key after "${WHSEC_PREFIX}" is ${n} bytes; Standard Webhooks keys are ${WHSEC_MIN_BYTES} to ${WHSEC_MAX_BYTES}`;
    }
    return null;
  }
  if (!PRINTABLE_ASCII.test(secret)) {
    const bad = [...secret].findIndex((ch) => !PRINTABLE_ASCII.test(ch));
    return `character ${bad + 1} is not printable ASCII (spaces, control characters and non-ASCII cannot travel in the X-Callback-Secret header)`;
  }
  if (secret.length < PLAIN_MIN_CHARS) return `a plain secret needs at least ${PLAIN_MIN_CHARS} characters to be a key`;
  if (secret.length > PLAIN_MAX_CHARS) return `a plain secret has at most ${PLAIN_MAX_CHARS} characters`;
  return null;
}

/**
 * The same rule as newCallbackSecretProblem as one regular expression, for the OpenAPI
 * document (clients and contract fuzzers read it; a unit test keeps the two in agreement).
 * Byte counts as base64 lengths: k full groups of 4 carry 3k bytes, "xx==" one more and
 * "xxx=" two more, and the last character before padding carries no stray bits.
 */
export const CALLBACK_SECRET_PATTERN =
  '^(?:whsec_(?:(?:[A-Za-z0-9+/]{4}){8,21}(?:[A-Za-z0-9+/][AQgw]==)?|(?:[A-Za-z0-9+/]{4}){8,20}[A-Za-z0-9+/]{2}[AEIMQUYcgkosw048]=)' +
  '|(?!whsec_)[\\x21-\\x7e]{24,500})$';
