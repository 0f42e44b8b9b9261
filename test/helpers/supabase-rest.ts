/**
 * A local stand-in for a Supabase project's REST endpoint (PostgREST under /rest/v1), enough
 * for what supabase-js sends from an Edge Function: select with `eq` filters, insert, update
 * and delete, one table at a time, authenticated with the service role key. Behind it is a
 * real database (PGlite, or a fresh PostgreSQL database) with the Supabase schema the example's
 * migrations expect (auth.users, auth.uid(), the realtime publication), so the migrations run
 * as written and their constraints answer as Supabase's would: a duplicate key is PostgREST's
 * 409 with code 23505. Every request is recorded with its answer.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { PGlite } from '@electric-sql/pglite';
import postgres from 'postgres';
import { freshPostgresDatabase, type Backend } from './database.js';

export interface SqlRunner {
  /** Several statements, no parameters. */
  exec(text: string): Promise<void>;
  query<T = Record<string, unknown>>(text: string, params?: unknown[]): Promise<T[]>;
  close(): Promise<void>;
}

/** What a Supabase project has before any migration of the app's own. */
const SUPABASE_PRELUDE = `
  create schema auth;
  create table auth.users (id uuid primary key, email text);
  create function auth.uid() returns uuid language sql stable as 'select null::uuid';
  create publication supabase_realtime;
`;

export async function supabaseDatabase(backend: Backend): Promise<SqlRunner> {
  let runner: SqlRunner;
  if (backend === 'pglite') {
    const pg = new PGlite();
    runner = {
      exec: async (text) => void (await pg.exec(text)),
      query: async <T>(text: string, params: unknown[] = []) => (await pg.query<T>(text, params)).rows,
      close: () => pg.close(),
    };
  } else {
    const db = await freshPostgresDatabase();
    const sql = postgres(db.url, { max: 2, onnotice: () => {} });
    runner = {
      exec: async (text) => void (await sql.unsafe(text)),
      query: async <T>(text: string, params: unknown[] = []) => (await sql.unsafe(text, params as never[])) as unknown as T[],
      close: async () => {
        await sql.end();
        await db.drop();
      },
    };
  }
  await runner.exec(SUPABASE_PRELUDE);
  return runner;
}

export interface RestRequest {
  method: string;
  table: string;
  /** The filters, as `column → eq.value`. */
  filters: Record<string, string>;
  body: unknown;
  status: number;
}

export interface SupabaseRest {
  url: string;
  requests: RestRequest[];
  /** Inserts, updates and deletes that the database accepted. */
  writes(table?: string): RestRequest[];
  close(): Promise<void>;
}

const IDENT = /^[a-z_][a-z0-9_]*$/;
const q = (ident: string) => `"${ident}"`;

class RestError extends Error {
  constructor(
    readonly status: number,
    readonly body: { code: string; message: string; details: string | null; hint: string | null },
  ) {
    super(body.message);
  }
}

/** PostgREST's status for a database error, by SQLSTATE. */
function statusFor(code: string): number {
  if (code === '23505' || code === '23503') return 409;
  if (code === '42P01') return 404;
  if (code.startsWith('23') || code.startsWith('22') || code === '42703') return 400;
  return 500;
}

export async function startSupabaseRest(db: SqlRunner, serviceKey: string): Promise<SupabaseRest> {
  const requests: RestRequest[] = [];
  const columnTypes = new Map<string, Map<string, string>>();

  async function columns(table: string): Promise<Map<string, string>> {
    let cols = columnTypes.get(table);
    if (!cols) {
      const rows = await db.query<{ column_name: string; udt_name: string }>(
        `select column_name, udt_name from information_schema.columns where table_schema = 'public' and table_name = $1`,
        [table],
      );
      if (rows.length === 0) throw new RestError(404, { code: '42P01', message: `relation "public.${table}" does not exist`, details: null, hint: null });
      cols = new Map(rows.map((r) => [r.column_name, r.udt_name]));
      columnTypes.set(table, cols);
    }
    return cols;
  }

  /** `"col" = value` for each eq filter, values as text compared with the column as text. */
  function where(filters: Record<string, string>, cols: Map<string, string>, params: unknown[]): string {
    const parts = Object.entries(filters).map(([col, f]) => {
      if (!cols.has(col) || !f.startsWith('eq.')) throw new RestError(400, { code: 'PGRST100', message: `unsupported filter ${col}=${f}`, details: null, hint: null });
      params.push(f.slice(3));
      return `${q(col)}::text = $${params.length}`;
    });
    return parts.length ? ` where ${parts.join(' and ')}` : '';
  }

  /** Each key of a JSON object as its column's type, from one jsonb parameter. */
  function values(body: Record<string, unknown>, cols: Map<string, string>, params: unknown[]): Array<[string, string]> {
    params.push(JSON.stringify(body));
    // As text first: a client that sees a jsonb parameter would encode the string as a JSON string.
    const p = `$${params.length}::text::jsonb`;
    return Object.keys(body).map((key) => {
      const type = cols.get(key);
      if (!type) throw new RestError(400, { code: 'PGRST204', message: `Could not find the '${key}' column`, details: null, hint: null });
      const lit = key.replace(/'/g, "''");
      return [q(key), type === 'jsonb' || type === 'json' ? `(${p} -> '${lit}')::${type}` : `(${p} ->> '${lit}')::${type}`];
    });
  }

  async function handle(req: http.IncomingMessage, raw: string): Promise<{ status: number; body?: unknown; record: RestRequest | null }> {
    const url = new URL(req.url ?? '/', 'http://x');
    const match = /^\/rest\/v1\/([^/]+)$/.exec(url.pathname);
    if (!match) return { status: 404, body: { message: 'not a REST path' }, record: null };
    if (req.headers['apikey'] !== serviceKey || req.headers['authorization'] !== `Bearer ${serviceKey}`) {
      return { status: 401, body: { code: 'PGRST301', message: 'Invalid API key' }, record: null };
    }
    const table = decodeURIComponent(match[1]!);
    const filters: Record<string, string> = {};
    let select = '*';
    for (const [k, v] of url.searchParams) {
      if (k === 'select') select = v;
      else filters[k] = v;
    }
    const body = raw ? (JSON.parse(raw) as unknown) : null;
    const record: RestRequest = { method: req.method!, table, filters, body, status: 0 };
    if (!IDENT.test(table)) throw new RestError(400, { code: 'PGRST100', message: 'bad table name', details: null, hint: null });
    const cols = await columns(table);
    const params: unknown[] = [];
    switch (req.method) {
      case 'GET': {
        const list = select === '*' ? '*' : select.split(',').map((c) => c.trim());
        if (list !== '*' && list.some((c) => !cols.has(c))) throw new RestError(400, { code: '42703', message: `unknown column in select=${select}`, details: null, hint: null });
        const rows = await db.query(`select ${list === '*' ? '*' : list.map(q).join(', ')} from ${q(table)}${where(filters, cols, params)}`, params);
        if (String(req.headers['accept']).includes('application/vnd.pgrst.object+json')) {
          if (rows.length !== 1) throw new RestError(406, { code: 'PGRST116', message: 'JSON object requested, multiple (or no) rows returned', details: null, hint: null });
          return { status: 200, body: rows[0], record };
        }
        return { status: 200, body: rows, record };
      }
      case 'POST': {
        const objects = (Array.isArray(body) ? body : [body]) as Array<Record<string, unknown>>;
        for (const o of objects) {
          const pairs = values(o, cols, params);
          await db.query(`insert into ${q(table)} (${pairs.map((p) => p[0]).join(', ')}) values (${pairs.map((p) => p[1]).join(', ')})`, params.splice(0));
        }
        return { status: 201, record };
      }
      case 'PATCH': {
        const pairs = values(body as Record<string, unknown>, cols, params);
        await db.query(`update ${q(table)} set ${pairs.map(([c, v]) => `${c} = ${v}`).join(', ')}${where(filters, cols, params)}`, params);
        return { status: 204, record };
      }
      case 'DELETE':
        await db.query(`delete from ${q(table)}${where(filters, cols, params)}`, params);
        return { status: 204, record };
      default:
        return { status: 405, body: { message: 'method not allowed' }, record };
    }
  }

  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const raw = Buffer.concat(chunks).toString('utf8');
      handle(req, raw)
        .catch((err: unknown) => {
          const e = err as RestError & { code?: string; detail?: string; hint?: string };
          const failed = err instanceof RestError
            ? { status: e.status, body: e.body }
            : { status: statusFor(String(e.code ?? '')), body: { code: String(e.code ?? ''), message: e.message, details: e.detail ?? null, hint: e.hint ?? null } };
          const url = new URL(req.url ?? '/', 'http://x');
          const table = /^\/rest\/v1\/([^/]+)$/.exec(url.pathname)?.[1] ?? '';
          let body: unknown = raw;
          try {
            body = raw ? JSON.parse(raw) : null;
          } catch {
            /* kept as text */
          }
          return { ...failed, record: { method: req.method!, table, filters: {}, body, status: 0 } as RestRequest };
        })
        .then(({ status, body, record }) => {
          if (record) requests.push({ ...record, status });
          res.writeHead(status, body === undefined ? {} : { 'content-type': 'application/json' });
          res.end(body === undefined ? '' : JSON.stringify(body));
        });
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    writes: (table) => requests.filter((r) => r.method !== 'GET' && r.status < 300 && (!table || r.table === table)),
    close: async () => {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
