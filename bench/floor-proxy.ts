/**
 * The floor: the least a Node proxy can do on this machine. node:http in, undici out, bytes piped
 * both ways, nothing parsed, nothing recorded. What it adds over direct is what one more process
 * and two more loopback hops cost here; what the bridge adds over it is the bridge's own work.
 *
 * Run as a child process of bench/run.ts with the upstream's origin as its argument; prints
 * `floor listening on http://127.0.0.1:PORT`.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { Agent, type Dispatcher, request } from 'undici';

const upstream = process.argv[2] ?? '';
const agent = new Agent({ keepAliveTimeout: 30_000 });
const HOP = new Set(['connection', 'keep-alive', 'transfer-encoding', 'host', 'content-length']);

const server = http.createServer({ keepAliveTimeout: 65_000 }, (req, res) => {
  const chunks: Buffer[] = [];
  req.on('data', (c: Buffer) => chunks.push(c));
  req.on('end', () => {
    const headers: Record<string, string> = {};
    for (const [k, v] of Object.entries(req.headers))
      if (typeof v === 'string' && !HOP.has(k)) headers[k] = v;
    request(upstream + (req.url ?? '/'), {
      method: (req.method ?? 'GET') as Dispatcher.HttpMethod,
      headers,
      body: Buffer.concat(chunks),
      dispatcher: agent,
    }).then(
      async (up) => {
        const out: Record<string, string | string[]> = {};
        for (const [k, v] of Object.entries(up.headers)) if (v !== undefined && !HOP.has(k)) out[k] = v;
        res.writeHead(up.statusCode, out);
        for await (const chunk of up.body as AsyncIterable<Buffer>) {
          if (!res.write(chunk)) await new Promise((r) => res.once('drain', r));
        }
        res.end();
      },
      (err: Error) => {
        res.writeHead(502, { 'content-type': 'text/plain' });
        res.end(err.message);
      },
    );
  });
});

server.listen(0, '127.0.0.1', () => {
  const { port } = server.address() as AddressInfo;
  process.stdout.write(`floor listening on http://127.0.0.1:${port}\n`);
});

process.on('disconnect', () => process.exit(0));
