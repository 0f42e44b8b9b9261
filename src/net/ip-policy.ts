/**
 * Which IP addresses outgoing HTTP may reach (SSRF policy), kept apart from the HTTP plumbing
 * so it can be read and tested on its own. Addresses are parsed here rather than with
 * net.BlockList because the embedded-IPv4 forms (::ffff:a.b.c.d, ::a.b.c.d, 64:ff9b::/96,
 * 2002::/16) must be judged as the IPv4 address they reach, and BlockList does not say how it
 * treats them.
 */
import net from 'node:net';

export type Ip = { v: 4; n: number } | { v: 6; n: bigint };
export type Verdict = { ok: true } | { ok: false; reason: string };

export function parseIp(text: string): Ip | null {
  let s = text.trim();
  if (s.startsWith('[') && s.endsWith(']')) s = s.slice(1, -1);
  const zone = s.indexOf('%');
  if (zone >= 0) s = s.slice(0, zone);
  const kind = net.isIP(s);
  if (kind === 4) return { v: 4, n: parseV4(s) };
  if (kind === 6) return { v: 6, n: parseV6(s) };
  return null;
}

function parseV4(s: string): number {
  const [a, b, c, d] = s.split('.').map(Number) as [number, number, number, number];
  return ((a << 24) | (b << 16) | (c << 8) | d) >>> 0;
}

// Only called on strings net.isIP accepted as IPv6, so the shape is already known to be valid.
function parseV6(text: string): bigint {
  let s = text;
  const lastColon = s.lastIndexOf(':');
  if (s.includes('.', lastColon)) {
    // Trailing dotted quad (::ffff:1.2.3.4): rewrite as two hex groups, then parse as usual.
    const v4 = parseV4(s.slice(lastColon + 1));
    s = `${s.slice(0, lastColon + 1)}${(v4 >>> 16).toString(16)}:${(v4 & 0xffff).toString(16)}`;
  }
  const [head, rest] = s.split('::') as [string, string | undefined];
  const groups = (x: string) => (x ? x.split(':').map((g) => parseInt(g, 16)) : []);
  const h = groups(head);
  const r = rest === undefined ? [] : groups(rest);
  const all = [...h, ...new Array<number>(8 - h.length - r.length).fill(0), ...r];
  return all.reduce((acc, g) => (acc << 16n) | BigInt(g), 0n);
}

export function formatIp(ip: Ip): string {
  if (ip.v === 4) return [24, 16, 8, 0].map((sh) => (ip.n >>> sh) & 255).join('.');
  const parts: string[] = [];
  for (let i = 7; i >= 0; i--) parts.push(((ip.n >> BigInt(i * 16)) & 0xffffn).toString(16));
  return parts.join(':');
}

type Cidr = { v: 4; base: number; bits: number } | { v: 6; base: bigint; bits: number };

export function parseCidr(text: string): Cidr | null {
  const [addr, len] = text.split('/') as [string, string | undefined];
  const ip = parseIp(addr);
  if (!ip) return null;
  const max = ip.v === 4 ? 32 : 128;
  const bits = len === undefined ? max : Number(len);
  if (!Number.isInteger(bits) || bits < 0 || bits > max || (len !== undefined && !/^\d+$/.test(len))) return null;
  return ip.v === 4 ? { v: 4, base: ip.n, bits } : { v: 6, base: ip.n, bits };
}

function inCidr(ip: Ip, c: Cidr): boolean {
  if (ip.v !== c.v) return false;
  if (ip.v === 4 && c.v === 4) {
    if (c.bits === 0) return true;
    const mask = (0xffffffff << (32 - c.bits)) >>> 0;
    return ((ip.n & mask) >>> 0) === ((c.base & mask) >>> 0);
  }
  const shift = BigInt(128 - c.bits);
  return (ip.n as bigint) >> shift === (c.base as bigint) >> shift;
}

const range = (text: string, reason: string) => ({ cidr: parseCidr(text)!, reason });

/** Addresses no request may reach unless allow-listed: IANA special-purpose registries, v4 and v6. */
const BLOCKED = [
  range('0.0.0.0/8', 'unspecified'),
  range('10.0.0.0/8', 'private'),
  range('100.64.0.0/10', 'carrier-grade NAT'),
  range('127.0.0.0/8', 'loopback'),
  range('169.254.0.0/16', 'link-local'), // includes the cloud metadata service 169.254.169.254
  range('172.16.0.0/12', 'private'),
  range('192.0.0.0/24', 'IETF protocol assignment'),
  range('192.0.2.0/24', 'documentation'),
  range('192.88.99.0/24', '6to4 relay anycast'),
  range('192.168.0.0/16', 'private'),
  range('198.18.0.0/15', 'benchmarking'),
  range('198.51.100.0/24', 'documentation'),
  range('203.0.113.0/24', 'documentation'),
  range('224.0.0.0/4', 'multicast'),
  range('240.0.0.0/4', 'reserved'), // includes broadcast 255.255.255.255
  range('::/128', 'unspecified'),
  range('::1/128', 'loopback'),
  range('100::/64', 'discard-only'),
  range('2001::/32', 'Teredo'), // embeds an obfuscated IPv4 address; nothing legitimate to download from
  range('2001:db8::/32', 'documentation'),
  range('64:ff9b:1::/48', 'local-use NAT64'),
  range('fc00::/7', 'unique-local'),
  range('fe80::/10', 'link-local'),
  range('fec0::/10', 'site-local'),
  range('ff00::/8', 'multicast'),
];

/**
 * The IPv4 address an IPv6 address stands for, when it embeds one: IPv4-mapped (::ffff:0:0/96),
 * IPv4-compatible (::/96, deprecated), NAT64 (64:ff9b::/96) and 6to4 (2002::/16). The kernel or a
 * NAT64 gateway would deliver such packets to that IPv4 address, so that is what must be judged.
 */
export function embeddedV4(ip: Ip): Ip | null {
  if (ip.v !== 6) return null;
  const n = ip.n;
  const low32 = Number(n & 0xffffffffn);
  if (n >> 32n === 0xffffn) return { v: 4, n: low32 };
  if (n >> 32n === 0n && n > 1n) return { v: 4, n: low32 };
  if (n >> 32n === 0x0064ff9b0000000000000000n) return { v: 4, n: low32 };
  if (n >> 112n === 0x2002n) return { v: 4, n: Number((n >> 80n) & 0xffffffffn) };
  return null;
}

/** A compiled allow-list: IPs, CIDRs and host names (exact, or "*.example.com" / ".example.com" suffixes). */
export class OutboundPolicy {
  private readonly cidrs: Cidr[] = [];
  private readonly names = new Set<string>();
  private readonly suffixes: string[] = [];

  constructor(allow: readonly string[]) {
    for (const raw of allow) {
      const entry = raw.trim().toLowerCase();
      if (!entry) continue;
      const cidr = parseCidr(entry);
      if (cidr) this.cidrs.push(cidr);
      else if (entry.includes('/')) throw new Error(`outbound allow-list: "${raw}" is not a valid CIDR`);
      else if (entry.startsWith('*.')) this.suffixes.push(entry.slice(1));
      else if (entry.startsWith('.')) this.suffixes.push(entry);
      else this.names.add(entry.replace(/\.$/, ''));
    }
  }

  /** True when the host name itself is allow-listed: then whatever it resolves to is trusted. */
  hostAllowed(hostname: string): boolean {
    const h = hostname.toLowerCase().replace(/\.$/, '');
    return this.names.has(h) || this.suffixes.some((s) => h.endsWith(s));
  }

  checkAddress(address: string): Verdict {
    const ip = parseIp(address);
    if (!ip) return { ok: false, reason: 'not an IP address' };
    const v4 = embeddedV4(ip);
    const forms = v4 ? [ip, v4] : [ip];
    if (forms.some((f) => this.cidrs.some((c) => inCidr(f, c)))) return { ok: true };
    // The v6 wrapper ranges themselves (::ffff:0:0/96 …) are not listed: the embedded v4 decides.
    for (const f of v4 ? [v4] : forms) {
      const hit = BLOCKED.find((b) => inCidr(f, b.cidr));
      if (hit) return { ok: false, reason: hit.reason };
    }
    return { ok: true };
  }
}
