/**
 * A raw TCP (or TLS) HTTP peer that answers the way an HTTP/1.0 server does: a status line,
 * `Connection: close`, the body, then FIN, all written at once, whatever the reader's pace.
 * Python's http.server is one such host. Written on net/tls rather than node:http so nothing
 * smooths the timing: the whole answer and the FIN are in the reader's socket buffer before it
 * has read the body.
 */
import net from 'node:net';
import tls from 'node:tls';

export interface Answer {
  status?: number;
  body: Buffer;
  /** The Content-Length sent: the body's length (default), another number (a short body), or none (EOF-delimited). */
  contentLength?: number | 'none';
}

export interface ClosingHost {
  url(pathname: string): string;
  /** Requests seen per path. */
  hits(pathname: string): number;
  close(): Promise<void>;
}

export async function startClosingHost(
  answer: (pathname: string, nth: number) => Answer,
  opts: { tls?: { key: string | Buffer; cert: string | Buffer } } = {},
): Promise<ClosingHost> {
  const hits = new Map<string, number>();
  const sockets = new Set<net.Socket>();
  const onConnection = (sock: net.Socket) => {
    sockets.add(sock);
    sock.on('close', () => sockets.delete(sock));
    sock.on('error', () => {}); // the reader may reset: that is its business
    let head = Buffer.alloc(0);
    const onData = (d: Buffer) => {
      head = Buffer.concat([head, d]);
      const end = head.indexOf('\r\n\r\n');
      if (end < 0) return;
      const text = head.subarray(0, end).toString('latin1');
      // Wait for a request body (callbacks POST one) before answering.
      const length = Number(/\r\ncontent-length:\s*(\d+)/i.exec(text)?.[1] ?? 0);
      if (head.length < end + 4 + length) return;
      sock.off('data', onData);
      const pathname = new URL(text.split(' ')[1] ?? '/', 'http://x').pathname;
      const nth = (hits.get(pathname) ?? 0) + 1;
      hits.set(pathname, nth);
      const a = answer(pathname, nth);
      const declared = a.contentLength === undefined ? a.body.length : a.contentLength;
      const lines = [
        `HTTP/1.1 ${a.status ?? 200} X`,
        'Content-Type: application/octet-stream',
        ...(declared === 'none' ? [] : [`Content-Length: ${declared}`]),
        'Connection: close',
      ];
      sock.end(Buffer.concat([Buffer.from(`${lines.join('\r\n')}\r\n\r\n`, 'latin1'), a.body]));
    };
    sock.on('data', onData);
  };
  const server = opts.tls
    ? tls.createServer({ key: opts.tls.key, cert: opts.tls.cert }, onConnection)
    : net.createServer(onConnection);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as net.AddressInfo;
  return {
    url: (p) => `${opts.tls ? 'https' : 'http'}://127.0.0.1:${port}${p}`,
    hits: (p) => hits.get(p) ?? 0,
    close: () =>
      new Promise<void>((r) => {
        for (const s of sockets) s.destroy();
        server.close(() => r());
      }),
  };
}
