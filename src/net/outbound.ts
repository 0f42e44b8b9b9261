/**
 * The one SSRF guard for every outgoing HTTP request (datasets, base models, callbacks).
 *
 * The check runs at connect time, inside the connection pools' createConnection: the DNS
 * answer that is judged is the one the socket then connects to, so a name that resolves to a
 * public address at validation time and to 127.0.0.1 a second later (DNS rebinding) is still
 * refused. Literal-IP URLs never reach DNS, so they are judged before connecting; and the
 * socket's peer address is judged again once connected, before a byte of the request is
 * handed to it, as a second line should a lookup path ever be bypassed.
 *
 * The HTTP itself is Node's http/https client behind undici's Dispatcher interface (see
 * node-http-dispatcher.ts for why not undici's own client).
 *
 * Redirects: the dispatcher follows none. Callers that want redirects follow them by hand with
 * `assertUrlAllowed` on each hop; every hop also goes through this guard.
 */
import dns from 'node:dns';
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import type { Duplex } from 'node:stream';
import { errors, type Dispatcher } from 'undici';
import { OutboundPolicy } from './ip-policy.js';
import { NodeHttpDispatcher } from './node-http-dispatcher.js';

export const SSRF_BLOCKED = 'SSRF_BLOCKED';

export class OutboundBlockedError extends Error {
  override readonly name = 'OutboundBlockedError';
  readonly code = SSRF_BLOCKED;
  constructor(
    readonly host: string,
    readonly address: string | null,
    readonly reason: string,
  ) {
    const at = address && address !== host ? ` (${address})` : '';
    super(
      `refused to connect to ${host}${at}: ${reason} address; add it to OUTBOUND_ALLOW if this server may reach it`,
    );
  }
}

export function isOutboundBlockedError(err: unknown): err is OutboundBlockedError {
  return err instanceof OutboundBlockedError || (err instanceof Error && (err as { code?: unknown }).code === SSRF_BLOCKED);
}

/** Resolves a host name to every address it has (injectable so tests can simulate rebinding). */
export type Resolver = (hostname: string, family: 0 | 4 | 6) => Promise<{ address: string; family: number }[]>;

const systemResolver: Resolver = (hostname, family) =>
  dns.promises.lookup(hostname, { all: true, family, verbatim: true });

export type OutboundOptions = {
  /** Connect timeout per attempt, ms (default 10 s). */
  connectTimeoutMs?: number;
  resolve?: Resolver;
  agent?: {
    /** How long an idle kept-alive connection stays open for the next request, ms (default 4 s). */
    keepAliveTimeout?: number;
  };
  /** Certificate authorities to trust instead of the system's (a private CA; tests). */
  ca?: string | Buffer | (string | Buffer)[];
};

const stripBrackets = (h: string) => (h.startsWith('[') && h.endsWith(']') ? h.slice(1, -1) : h);

/**
 * A Dispatcher (undici's interface, Node's HTTP client) that refuses loopback, private,
 * link-local, CGNAT, unique-local, multicast, unspecified and other special-purpose addresses
 * (IPv4-mapped forms included) unless the host name, the IP or a CIDR holding it is in `allow`.
 */
export function createOutboundDispatcher(allow: readonly string[], opts: OutboundOptions = {}): Dispatcher {
  const guarded = connectionGuard(allow, opts);
  const keepAlive = { keepAlive: true, timeout: opts.agent?.keepAliveTimeout ?? 4000 };
  class GuardedHttpAgent extends http.Agent {
    override createConnection(options: http.ClientRequestArgs, done?: (err: Error | null, stream: Duplex) => void) {
      return guarded(options, done as never, (o) => net.connect(o as net.NetConnectOpts));
    }
  }
  class GuardedHttpsAgent extends https.Agent {
    override createConnection(options: https.RequestOptions, done?: (err: Error | null, stream: Duplex) => void) {
      // https.Agent's own createConnection: tls.connect with the pool's TLS session cache.
      return guarded(options, done as never, (o) => super.createConnection(o) as net.Socket);
    }
  }
  return new NodeHttpDispatcher({
    httpAgent: new GuardedHttpAgent(keepAlive),
    httpsAgent: new GuardedHttpsAgent({ ...keepAlive, ...(opts.ca ? { ca: opts.ca } : {}) }),
  });
}

/**
 * A plain TCP connection through the same guard, for protocols other than HTTP (SMTP): it
 * resolves once connected to an address the policy accepts.
 */
export function connectGuarded(allow: readonly string[], host: string, port: number, opts: OutboundOptions = {}): Promise<net.Socket> {
  const guarded = connectionGuard(allow, opts);
  return new Promise((resolve, reject) => {
    guarded({ host, port }, (err, socket) => (err ? reject(err) : resolve(socket as net.Socket)), (o) => net.connect(o as net.NetConnectOpts));
  });
}

/** The connect-time check both of the above use: DNS answers and the connected peer judged. */
function connectionGuard(allow: readonly string[], opts: OutboundOptions) {
  const policy = new OutboundPolicy(allow);
  const resolve = opts.resolve ?? systemResolver;
  const connectTimeoutMs = opts.connectTimeoutMs ?? 10_000;

  // net.connect's lookup hook: called with the host name only for non-IP hosts. With
  // autoSelectFamily (Node 20 default) it asks for all addresses; otherwise for one.
  const lookup = (hostname: string, options: dns.LookupOptions, callback: (...args: unknown[]) => void) => {
    const family = options.family === 4 || options.family === 6 ? options.family : 0;
    resolve(hostname, family).then(
      (addresses) => {
        if (addresses.length === 0) {
          const err = Object.assign(new Error(`no address for ${hostname}`), { code: 'ENOTFOUND', hostname });
          return callback(err);
        }
        // Connect only to the answers the policy accepts (a name may list ::1 and 127.0.0.1 with
        // only one allow-listed); refuse when none is left.
        let usable = addresses;
        if (!policy.hostAllowed(hostname)) {
          usable = addresses.filter((a) => policy.checkAddress(a.address).ok);
          if (usable.length === 0) {
            const a = addresses[0]!;
            const verdict = policy.checkAddress(a.address);
            return callback(new OutboundBlockedError(hostname, a.address, verdict.ok ? 'refused' : verdict.reason));
          }
        }
        if (options.all) return callback(null, usable);
        const first = usable[0]!;
        return callback(null, first.address, first.family);
      },
      (err: unknown) => callback(err),
    );
  };

  /**
   * Opens a vetted connection: the socket is handed to the HTTP client only once it is
   * connected to an address the policy accepts; until then errors and the timeout go to `done`.
   */
  const guarded = (
    options: http.ClientRequestArgs,
    done: (err: Error | null, socket?: Duplex) => void,
    open: (options: http.ClientRequestArgs) => net.Socket,
  ): undefined => {
    const host = stripBrackets(String(options.host ?? options.hostname ?? ''));
    const nameAllowed = policy.hostAllowed(host);
    if (net.isIP(host) && !nameAllowed) {
      const verdict = policy.checkAddress(host);
      if (!verdict.ok) {
        done(new OutboundBlockedError(host, host, verdict.reason));
        return undefined;
      }
    }
    let settled = false;
    const settle = (err: Error | null, socket?: net.Socket) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      if (err) {
        socket?.destroy();
        done(err);
      } else {
        done(null, socket);
      }
    };
    const socket = open({ ...options, lookup: lookup as net.LookupFunction });
    // Stays for the socket's life: an error between hand-over and the HTTP client attaching
    // its own listener must not go unheard (an 'error' with no listener ends the process).
    socket.on('error', (err) => settle(err, socket));
    const timer = setTimeout(
      () => settle(new errors.ConnectTimeoutError(`connect timeout after ${connectTimeoutMs} ms (${host})`), socket),
      connectTimeoutMs,
    );
    socket.once('connect', () => {
      const remote = socket.remoteAddress;
      if (!nameAllowed && remote) {
        const verdict = policy.checkAddress(remote);
        if (!verdict.ok) return settle(new OutboundBlockedError(host, remote, verdict.reason), socket);
      }
      settle(null, socket);
    });
    return undefined;
  };
  return guarded;
}

/**
 * Early, clear refusal of a URL before any work is queued for it: http(s) only, literal IPs and
 * `localhost` names judged now. Names are judged again (after DNS) at connect time.
 */
export function assertUrlAllowed(url: string | URL, allow: readonly string[]): URL {
  let u: URL;
  try {
    u = typeof url === 'string' ? new URL(url) : url;
  } catch {
    throw Object.assign(new Error('not a valid URL'), { code: 'INVALID_URL' });
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') {
    throw Object.assign(new Error(`unsupported URL scheme ${u.protocol} (only http and https)`), { code: 'INVALID_URL' });
  }
  const policy = new OutboundPolicy(allow);
  const host = stripBrackets(u.hostname);
  if (policy.hostAllowed(host)) return u;
  if (net.isIP(host)) {
    const verdict = policy.checkAddress(host);
    if (!verdict.ok) throw new OutboundBlockedError(host, host, verdict.reason);
  } else if (host === 'localhost' || host.endsWith('.localhost')) {
    // RFC 6761: these names always mean loopback, whatever DNS says.
    if (!policy.checkAddress('127.0.0.1').ok && !policy.checkAddress('::1').ok) {
      throw new OutboundBlockedError(host, null, 'loopback');
    }
  }
  return u;
}
