import type { LookupAddress } from 'node:dns';
import { lookup } from 'node:dns/promises';
import net from 'node:net';
import type { FastifyInstance } from 'fastify';

/** The addresses `localhost` names here (tests give their own). */
export type LocalhostLookup = () => Promise<LookupAddress[]>;

const systemLookup: LocalhostLookup = () => lookup('localhost', { all: true });

/**
 * Listens on `host`; for `localhost`, on every address it names (127.0.0.1 and ::1 where both are
 * in /etc/hosts), as clients try either. Fastify would bind the others itself, on servers of its
 * own that call its router alone: no connection guard, no provider lane, no pipelining refusal
 * (create-fastify.ts). Here each other address is a plain listener that hands its connections to
 * the one HTTP server, so every connection meets the same front door, counts against the same
 * caps and is drained by the same close. An address that cannot be bound (IPv6 turned off) is
 * skipped, as fastify skips it. Returns the first address's URL and what stops the others.
 */
export async function listenEverywhere(
  app: FastifyInstance,
  host: string,
  port: number,
  lookupLocalhost: LocalhostLookup = systemLookup,
): Promise<{ url: string; extra: net.Server[] }> {
  if (host !== 'localhost') return { url: await app.listen({ host, port }), extra: [] };
  const found = await lookupLocalhost().catch(() => []);
  const addresses = [...new Set(found.map((a) => a.address))];
  const first = addresses.shift() ?? '127.0.0.1';
  const url = await app.listen({ host: first, port });
  const bound = (app.server.address() as net.AddressInfo).port;
  const extra: net.Server[] = [];
  for (const address of addresses) {
    // node's HTTP server turns Nagle off on the connections it accepts; these get the same.
    const listener = net.createServer({ noDelay: true }, (socket) => app.server.emit('connection', socket));
    const bind = await new Promise<boolean>((resolve) => {
      listener.once('error', () => resolve(false));
      listener.listen({ host: address, port: bound }, () => resolve(true));
    });
    if (bind) extra.push(listener);
  }
  return { url, extra };
}
