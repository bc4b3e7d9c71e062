import type { IncomingMessage } from 'node:http';
import { BlockList, isIP } from 'node:net';

/**
 * Parses AIBRIDGE_TRUSTED_PROXIES: comma-separated addresses or CIDRs (`10.0.0.0/8`, `::1`).
 * Throws an Error naming the first bad entry; the config turns it into a ConfigError.
 */
export function parseTrustedProxies(raw: string): string[] {
  const out: string[] = [];
  for (const part of raw.split(',')) {
    const entry = part.trim();
    if (entry === '') continue;
    const [address = '', prefix, extra] = entry.split('/');
    const family = isIP(address);
    const bits = family === 4 ? 32 : 128;
    const validPrefix =
      prefix === undefined || (/^\d{1,3}$/.test(prefix) && Number(prefix) <= bits && extra === undefined);
    if (family === 0 || !validPrefix)
      throw new Error(`"${entry}" is not an IP address or CIDR (e.g. 10.0.0.0/8, 127.0.0.1, ::1)`);
    out.push(entry);
  }
  if (out.length === 0) throw new Error('expected at least one address or CIDR');
  return out;
}

/** `::ffff:10.0.0.1` (an IPv4 client on a dual-stack socket) is matched as `10.0.0.1`. */
function normalise(address: string): string {
  const m = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
  return m ? m[1]! : address;
}

/**
 * The reverse proxies whose `X-Forwarded-For` the bridge believes (proxy-addr semantics, as
 * fastify's `trustProxy`): the client is the right-most address of socket + XFF that is not a
 * trusted proxy. Without any, XFF is ignored: anyone could write it.
 */
export class TrustedProxies {
  private readonly list = new BlockList();

  constructor(readonly entries: readonly string[]) {
    for (const entry of entries) {
      const [address = '', prefix] = entry.split('/');
      const type = isIP(address) === 4 ? 'ipv4' : 'ipv6';
      if (prefix === undefined) this.list.addAddress(address, type);
      else this.list.addSubnet(address, Number(prefix), type);
    }
  }

  trusts(address: string | undefined): boolean {
    if (address === undefined || this.entries.length === 0) return false;
    const a = normalise(address);
    const family = isIP(a);
    if (family === 0) return false;
    return this.list.check(a, family === 4 ? 'ipv4' : 'ipv6');
  }

  /** What fastify's `trustProxy` takes: false when none are configured. */
  fastifyOption(): false | ((address: string, hop: number) => boolean) {
    return this.entries.length === 0 ? false : (address) => this.trusts(address);
  }

  /** The client's address for a raw request (upgrades never become fastify requests, so they have no `req.ip`). */
  clientAddress(req: IncomingMessage): string | undefined {
    let address = req.socket.remoteAddress;
    if (!this.trusts(address)) return address;
    const header = req.headers['x-forwarded-for'];
    const hops = (Array.isArray(header) ? header.join(',') : (header ?? ''))
      .split(',')
      .map((s) => s.trim())
      .filter((s) => s !== '');
    while (hops.length > 0 && this.trusts(address)) address = hops.pop();
    return address;
  }
}
