/**
 * GET with redirects followed by hand. Each hop is a new request through the caller's
 * dispatcher, so the SSRF guard judges every address, and headers meant for one origin (a
 * bearer token) go only to hops on that origin, never to a CDN it redirects to.
 */
import { request, type Dispatcher } from 'undici';

/** A redirect that cannot be followed; `url` is the hop that answered it. */
export class RedirectError extends Error {
  override readonly name = 'RedirectError';
  constructor(
    message: string,
    readonly status: number,
    readonly url: URL,
    options?: ErrorOptions,
  ) {
    super(message, options);
  }
}

export interface RedirectingGet {
  dispatcher: Dispatcher;
  timeoutMs: number;
  signal?: AbortSignal | undefined;
  /** Sent on every hop. */
  headers: Record<string, string>;
  /** Sent only on hops to the first URL's origin. */
  originHeaders?: Record<string, string> | undefined;
  maxRedirects: number;
}

/**
 * The first answer that is not a redirect (304 Not Modified included), with the URL that gave
 * it. Network errors (the SSRF guard's refusal among them) are thrown as undici throws them.
 */
export async function getFollowingRedirects(url: URL, opts: RedirectingGet): Promise<{ res: Dispatcher.ResponseData; url: URL }> {
  let current = url;
  for (let hop = 0; ; hop++) {
    const res = await request(current, {
      dispatcher: opts.dispatcher,
      method: 'GET',
      headersTimeout: opts.timeoutMs,
      bodyTimeout: opts.timeoutMs,
      signal: opts.signal,
      headers: { ...opts.headers, ...(current.origin === url.origin ? opts.originHeaders : {}) },
    });
    const status = res.statusCode;
    if (status < 300 || status >= 400 || status === 304) return { res, url: current };
    await res.body.dump().catch(() => {});
    const location = Array.isArray(res.headers.location) ? res.headers.location[0] : res.headers.location;
    if (!location) throw new RedirectError(`HTTP ${status} redirect without a Location header`, status, current);
    if (hop >= opts.maxRedirects) throw new RedirectError(`too many redirects (more than ${opts.maxRedirects})`, status, current);
    let next: URL;
    try {
      next = new URL(location, current);
    } catch (err) {
      throw new RedirectError(`HTTP ${status} redirect to an invalid URL`, status, current, { cause: err });
    }
    if (next.protocol !== 'http:' && next.protocol !== 'https:') {
      throw new RedirectError(`HTTP ${status} redirect to an unsupported scheme ${next.protocol}`, status, current);
    }
    current = next;
  }
}
