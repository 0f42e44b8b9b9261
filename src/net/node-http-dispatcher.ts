/**
 * An undici Dispatcher whose HTTP/1.1 runs in Node's own http/https client, so callers keep
 * undici's `request()` API (timeouts, signals, `body.dump()`) while the wire protocol is parsed
 * by the runtime.
 *
 * Why not undici's own Agent: undici 7's HTTP/1 client pauses its parser when the consumer of
 * a response body applies back-pressure, and asserts the parser is not paused when the socket
 * ends. A peer that sends its body and closes the connection (Connection: close, then FIN)
 * while the body is being written to disk therefore throws an AssertionError from a socket
 * 'end' handler: it cannot be caught and ends the process. The fix shipped in undici 8 only,
 * which needs a newer Node than this service supports. Node's client never pauses its parser:
 * back-pressure stops reading from the socket, and the end of the socket completes or fails
 * the response like any other.
 *
 * Serves the handler form undici 7's `request()`, `stream()` and `pipeline()` use (onConnect,
 * onHeaders, onData, onComplete, onError). Request bodies: string, Buffer, Uint8Array or a
 * Readable. No upgrades, no CONNECT, no HTTP/2.
 */
import http from 'node:http';
import https from 'node:https';
import { Readable } from 'node:stream';
import { Dispatcher, errors } from 'undici';

/** undici's defaults for both timeouts. */
const DEFAULT_TIMEOUT_MS = 300_000;

export interface NodeHttpDispatcherOptions {
  /** Builds the connection pools; each Agent's createConnection is where connections are vetted. */
  httpAgent: http.Agent;
  httpsAgent: https.Agent;
}

type Handler = Dispatcher.DispatchHandler;
type Done = () => void;

export class NodeHttpDispatcher extends Dispatcher {
  readonly #http: http.Agent;
  readonly #https: https.Agent;
  /** Requests in flight: destroy() aborts them, close() waits for them. */
  readonly #inflight = new Map<(err: Error) => void, true>();
  #idle: Done[] = [];
  #closed = false;
  #destroyed = false;

  constructor(opts: NodeHttpDispatcherOptions) {
    super();
    this.#http = opts.httpAgent;
    this.#https = opts.httpsAgent;
  }

  override dispatch(opts: Dispatcher.DispatchOptions, handler: Handler): boolean {
    if (typeof handler.onHeaders !== 'function' || typeof handler.onError !== 'function') {
      throw new errors.InvalidArgumentError('this dispatcher serves handlers with onHeaders/onData/onComplete/onError');
    }
    if (this.#destroyed || this.#closed) {
      const err = this.#destroyed ? new errors.ClientDestroyedError() : new errors.ClientClosedError();
      queueMicrotask(() => handler.onError!(err));
      return false;
    }
    new Exchange(this, opts, handler).start();
    return true;
  }

  /** @internal */
  agentFor(protocol: string): http.Agent {
    return protocol === 'https:' ? this.#https : this.#http;
  }

  /** @internal */
  track(abort: (err: Error) => void): Done {
    this.#inflight.set(abort, true);
    return () => {
      this.#inflight.delete(abort);
      if (this.#inflight.size === 0) for (const f of this.#idle.splice(0)) f();
    };
  }

  override close(): Promise<void>;
  override close(callback: () => void): void;
  override close(callback?: () => void): Promise<void> | void {
    this.#closed = true;
    const p = new Promise<void>((resolve) => {
      const end = () => {
        this.#http.destroy();
        this.#https.destroy();
        resolve();
      };
      if (this.#inflight.size === 0) end();
      else this.#idle.push(end);
    });
    if (callback) void p.then(callback);
    else return p;
  }

  override destroy(err: Error | null, callback: () => void): void;
  override destroy(callback: () => void): void;
  override destroy(err: Error | null): Promise<void>;
  override destroy(): Promise<void>;
  override destroy(a?: Error | null | (() => void), b?: () => void): Promise<void> | void {
    const callback = typeof a === 'function' ? a : b;
    const err = (typeof a === 'function' ? null : a) ?? new errors.ClientDestroyedError();
    this.#destroyed = true;
    this.#closed = true;
    for (const abort of [...this.#inflight.keys()]) abort(err);
    this.#http.destroy();
    this.#https.destroy();
    const p = Promise.resolve();
    if (callback) void p.then(callback);
    else return p;
  }
}

/** One request and its response, from dispatch to onComplete or onError (exactly one of them). */
class Exchange {
  #req: http.ClientRequest | null = null;
  #res: http.IncomingMessage | null = null;
  #finished = false;
  #paused = false;
  #timer: NodeJS.Timeout | null = null;
  #bodyTimer = false;
  #untrack: Done = () => {};

  constructor(
    private readonly owner: NodeHttpDispatcher,
    private readonly opts: Dispatcher.DispatchOptions,
    private readonly handler: Handler,
  ) {}

  start(): void {
    const abort = (err?: Error) => this.fail(err ?? new errors.RequestAbortedError());
    this.#untrack = this.owner.track(abort);
    try {
      // The handler may abort at once (a signal that already fired).
      this.handler.onConnect?.(abort);
      if (this.#finished) return;
      this.send();
    } catch (err) {
      this.fail(err as Error);
    }
  }

  private send(): void {
    const { opts } = this;
    if (opts.upgrade || opts.method === 'CONNECT') throw new errors.NotSupportedError('upgrade and CONNECT are not supported');
    if (!opts.origin) throw new errors.InvalidArgumentError('origin is required');
    const origin = new URL(String(opts.origin));
    const body = opts.body;
    if (body != null && typeof body !== 'string' && !(body instanceof Uint8Array) && !(body instanceof Readable)) {
      throw new errors.NotSupportedError('request body must be a string, a Buffer, a Uint8Array or a Readable');
    }
    const req = (origin.protocol === 'https:' ? https : http).request({
      agent: this.owner.agentFor(origin.protocol),
      protocol: origin.protocol,
      hostname: origin.hostname.replace(/^\[(.*)\]$/, '$1'),
      port: origin.port || (origin.protocol === 'https:' ? 443 : 80),
      method: opts.method,
      path: withQuery(opts.path, opts.query),
      headers: headerObject(opts.headers),
    });
    this.#req = req;
    req.on('error', (err) => this.fail(err));
    req.on('response', (res) => this.onResponse(res));
    this.arm(opts.headersTimeout, () => new errors.HeadersTimeoutError());
    if (body instanceof Readable) {
      body.on('error', (err) => this.fail(err));
      body.pipe(req);
    } else {
      req.end(body ?? undefined);
    }
  }

  private onResponse(res: http.IncomingMessage): void {
    if (this.#finished) {
      res.destroy();
      return;
    }
    this.#res = res;
    const resume = () => {
      if (this.#finished || !this.#paused) return;
      this.#paused = false;
      this.armBody();
      res.resume();
    };
    res.on('data', (chunk: Buffer) => {
      if (this.#finished) return;
      this.armBody();
      let more: boolean;
      try {
        more = this.handler.onData!(chunk);
      } catch (err) {
        return this.fail(err as Error);
      }
      if (more === false) {
        // Back-pressure: Node stops reading the socket; the parser itself is never paused.
        this.#paused = true;
        this.disarm();
        res.pause();
      }
    });
    res.on('end', () => {
      if (this.#finished) return;
      this.#finished = true;
      this.disarm();
      this.#untrack();
      this.handler.onComplete!(raw(res.rawTrailers) as unknown as string[]);
    });
    res.on('error', (err) => this.fail(err));
    // A response cut short (connection reset, or closed before its Content-Length) ends in
    // 'close' without 'end'; Node has usually emitted 'error' first, this is the backstop.
    res.on('close', () => this.fail(new errors.SocketError('other side closed')));
    this.disarm();
    let more: boolean;
    try {
      more = this.handler.onHeaders!(res.statusCode ?? 0, raw(res.rawHeaders), resume, res.statusMessage ?? '');
    } catch (err) {
      return this.fail(err as Error);
    }
    if (more === false) {
      this.#paused = true;
      res.pause();
    } else {
      this.armBody();
    }
  }

  private armBody(): void {
    // Once per body chunk: restart the running body timer rather than make a new one.
    if (this.#timer && this.#bodyTimer) this.#timer.refresh();
    else this.arm(this.opts.bodyTimeout, () => new errors.BodyTimeoutError(), true);
  }

  private arm(ms: number | null | undefined, error: () => Error, body = false): void {
    this.disarm();
    const timeout = ms ?? DEFAULT_TIMEOUT_MS;
    if (timeout > 0) this.#timer = setTimeout(() => this.fail(error()), timeout);
    this.#bodyTimer = body;
  }

  private disarm(): void {
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = null;
  }

  fail(err: Error): void {
    if (this.#finished) return;
    this.#finished = true;
    this.disarm();
    this.#untrack();
    this.#res?.destroy();
    this.#req?.destroy();
    this.handler.onError!(err);
  }
}

/** Raw header lines as undici hands them over: name, value, name, value, as latin1 Buffers. */
function raw(lines: string[]): Buffer[] {
  return lines.map((s) => Buffer.from(s, 'latin1'));
}

function headerObject(headers: Dispatcher.DispatchOptions['headers']): http.OutgoingHttpHeaders {
  const out: http.OutgoingHttpHeaders = {};
  const add = (name: string, value: unknown) => {
    if (value === undefined || value === null) return;
    const key = name.toLowerCase();
    const prev = out[key];
    const next = Array.isArray(value) ? value.map(String) : String(value);
    out[key] = prev === undefined ? next : ([] as string[]).concat(prev as string | string[], next);
  };
  if (!headers) return out;
  if (Array.isArray(headers)) {
    // Either a flat [name, value, name, value] list or a list of [name, value] pairs.
    if (headers.every((h) => Array.isArray(h))) for (const [k, v] of headers as unknown as [string, string][]) add(k, v);
    else for (let i = 0; i < headers.length; i += 2) add(String(headers[i]), headers[i + 1]);
  } else if (typeof (headers as Iterable<unknown>)[Symbol.iterator] === 'function') {
    for (const [k, v] of headers as Iterable<[string, string]>) add(k, v);
  } else {
    for (const [k, v] of Object.entries(headers)) add(k, v);
  }
  return out;
}

function withQuery(path: string, query: Record<string, unknown> | undefined): string {
  if (!query) return path;
  const qs = new URLSearchParams();
  for (const [k, v] of Object.entries(query)) {
    for (const item of Array.isArray(v) ? v : [v]) if (item !== undefined) qs.append(k, String(item));
  }
  const s = qs.toString();
  return s ? `${path}${path.includes('?') ? '&' : '?'}${s}` : path;
}
