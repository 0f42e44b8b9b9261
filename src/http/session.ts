/**
 * Who may see the status pages and streams, and who may act on them.
 *
 * - A browser logs in with the API token (login form) and gets a session cookie: HttpOnly,
 *   SameSite=Lax (so a link from the upstream app opens the page logged in), Secure on https.
 *   The cookie is `<expiry>.<nonce>.<HMAC>` under a key derived from the API token: no session
 *   table, valid on every node, and rotating the token logs everyone out.
 * - Scripts may send `Authorization: Bearer <API_TOKEN>` instead.
 * - The session also opens the API's reads (GET, HEAD) that the pages link to (the job's JSON,
 *   its logs), when the browser says the request did not come from another site
 *   (http/auth.ts pageRead); every other API request still needs the bearer token.
 * - UI_PUBLIC_READ=true lets anyone read pages and streams; acting (Cancel) still needs one of
 *   the above.
 * - A form POST with the cookie must carry the CSRF token of that session (an HMAC of it, so
 *   nothing is stored) and come from our own origin (Origin, else Referer). Bearer requests
 *   need neither: a browser never adds that header by itself.
 */
import crypto from 'node:crypto';
import type { Context } from 'hono';
import { deleteCookie, getCookie, setCookie } from 'hono/cookie';
import { safeEqual } from '../security/compare.js';

export const SESSION_COOKIE = 'trainhook_session';
export const SESSION_TTL_SECONDS = 12 * 3600;

export interface Access {
  read: boolean;
  /** May cancel jobs and download logs. */
  write: boolean;
  via: 'bearer' | 'cookie' | 'public' | null;
  /** The verified session cookie, when via === 'cookie'. */
  session: string | null;
}

declare module 'hono' {
  interface ContextVariableMap {
    uiAccess: Access;
  }
}

export class UiAuth {
  private readonly key: Buffer;

  constructor(
    private readonly opts: { apiToken: string; publicRead: boolean; publicUrl: string | undefined; ttlSeconds?: number },
  ) {
    this.key = crypto.createHmac('sha256', opts.apiToken).update('trainhook ui session v1').digest();
  }

  checkToken(candidate: string): boolean {
    return safeEqual(candidate.trim(), this.opts.apiToken);
  }

  issue(now = Date.now()): string {
    const exp = Math.floor(now / 1000) + (this.opts.ttlSeconds ?? SESSION_TTL_SECONDS);
    const body = `${exp}.${crypto.randomBytes(12).toString('base64url')}`;
    return `${body}.${this.mac(`session:${body}`)}`;
  }

  verify(value: string | undefined, now = Date.now()): boolean {
    if (!value) return false;
    const parts = value.split('.');
    if (parts.length !== 3) return false;
    const [exp, nonce, mac] = parts as [string, string, string];
    if (!/^\d+$/.test(exp) || Number(exp) * 1000 <= now) return false;
    return safeEqual(mac, this.mac(`session:${exp}.${nonce}`));
  }

  csrfToken(session: string): string {
    return this.mac(`csrf:${session}`);
  }

  checkCsrf(session: string, token: string | undefined): boolean {
    return !!token && safeEqual(token, this.csrfToken(session));
  }

  /** Whether the request carries a valid session cookie. */
  hasSession(c: Context): boolean {
    return this.verify(getCookie(c, SESSION_COOKIE));
  }

  access(c: Context): Access {
    const header = c.req.header('authorization');
    const bearer = header ? /^Bearer\s+(.+)$/i.exec(header)?.[1] : undefined;
    if (bearer && this.checkToken(bearer)) return { read: true, write: true, via: 'bearer', session: null };
    const cookie = getCookie(c, SESSION_COOKIE);
    if (cookie && this.verify(cookie)) return { read: true, write: true, via: 'cookie', session: cookie };
    if (this.opts.publicRead) return { read: true, write: false, via: 'public', session: null };
    return { read: false, write: false, via: null, session: null };
  }

  setSession(c: Context, value: string): void {
    setCookie(c, SESSION_COOKIE, value, {
      httpOnly: true,
      sameSite: 'Lax',
      secure: this.isHttps(c),
      path: '/',
      maxAge: this.opts.ttlSeconds ?? SESSION_TTL_SECONDS,
    });
  }

  clearSession(c: Context): void {
    deleteCookie(c, SESSION_COOKIE, { path: '/', secure: this.isHttps(c), httpOnly: true, sameSite: 'Lax' });
  }

  /** A state-changing browser request must come from a page of ours. */
  sameOrigin(c: Context): boolean {
    const allowed = new Set([new URL(c.req.url).origin]);
    if (this.opts.publicUrl) allowed.add(new URL(this.opts.publicUrl).origin);
    const origin = c.req.header('origin');
    if (origin && origin !== 'null') return allowed.has(origin);
    const referer = c.req.header('referer');
    if (!referer) return false;
    try {
      return allowed.has(new URL(referer).origin);
    } catch {
      return false;
    }
  }

  private isHttps(c: Context): boolean {
    return new URL(c.req.url).protocol === 'https:' || !!this.opts.publicUrl?.startsWith('https:');
  }

  private mac(input: string): string {
    return crypto.createHmac('sha256', this.key).update(input).digest('base64url');
  }
}

/** Only a path on this server: `/jobs/…`, never `//evil.example` or an absolute URL. */
export function safeNext(next: string | undefined): string {
  if (!next || !next.startsWith('/') || next.startsWith('//') || next.startsWith('/\\')) return '/';
  return next;
}
