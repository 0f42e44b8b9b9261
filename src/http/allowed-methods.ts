/**
 * The methods a path answers to, for 405 Method Not Allowed: an unknown method on a known path
 * is told which ones exist (the Allow header) instead of getting 404 as if the path did not.
 */
import type { Hono } from 'hono';
import { TrieRouter } from 'hono/router/trie-router';
import { HttpError } from '../core/errors.js';

const METHODS = ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS'] as const;

export interface MethodRules {
  /** The methods the path answers to (empty: no route has this path). */
  allowed(path: string): string[];
  /**
   * For a path that is a route of its own (/api/v1/jobs/compare): its methods when the request's
   * is not among them, though a pattern beside it (/api/v1/jobs/{id}) would take the request.
   */
  refused(method: string, path: string): string[] | null;
}

/**
 * Reads the app's routes on first use (every route is registered by then). Middleware (method
 * ALL) is left out: it runs on every path and says nothing about which methods one has.
 * HEAD goes with GET, as Hono answers HEAD with the GET handler. A path that is a route of its
 * own has that route's methods only, not those of a pattern that would also match it.
 */
export function methodRules(app: Hono<any, any, any>): MethodRules {
  let built: { router: TrieRouter<string>; fixed: Set<string> } | null = null;
  const build = () => {
    if (!built) {
      const router = new TrieRouter<string>();
      const fixed = new Set<string>();
      for (const r of app.routes) {
        if (r.method === 'ALL') continue;
        router.add(r.method.toUpperCase(), r.path, r.path);
        if (!/[:*]/.test(r.path)) fixed.add(r.path);
      }
      built = { router, fixed };
    }
    return built;
  };
  const allowed = (path: string) => {
    const { router } = build();
    const matches = METHODS.map((m) => ({ method: m, patterns: router.match(m === 'HEAD' ? 'GET' : m, path)[0].map(([p]) => p) }));
    const exact = matches.some((m) => m.patterns.includes(path));
    return matches.filter((m) => (exact ? m.patterns.includes(path) : m.patterns.length > 0)).map((m) => m.method);
  };
  return {
    allowed,
    refused(method, path) {
      if (!build().fixed.has(path)) return null;
      const methods = allowed(path);
      return methods.includes(method.toUpperCase() as (typeof METHODS)[number]) ? null : methods;
    },
  };
}

export function methodNotAllowed(method: string, path: string, allowed: string[]): HttpError {
  return new HttpError(
    405,
    'METHOD_NOT_ALLOWED',
    `${method} is not allowed on ${path}; allowed: ${allowed.join(', ')}`,
    { allow: allowed },
    { Allow: allowed.join(', ') },
  );
}
