import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import * as sea from 'node:sea';
import type { FastifyPluginAsync, FastifyReply } from 'fastify';

/** The page's policy: its own scripts, styles and connections only; nothing inline, never framed. */
export const ADMIN_CSP =
  "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; " +
  "frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.map': 'application/json; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
};

interface Asset {
  body: Buffer;
  type: string;
  etag: string;
}

/**
 * Where `npm run build` put the page (dist/admin): beside the bundle (dist/aibridge.cjs), beside a
 * single-executable build (dist/aibridge), or under the working directory when running from source.
 */
export function findAdminAssets(candidates?: string[]): string | undefined {
  const list = candidates ?? [
    // The bundle's chunks are in dist/server/, the page in dist/admin.
    ...(typeof __dirname === 'string' ? [path.join(__dirname, '..', 'admin')] : []),
    path.join(path.dirname(process.execPath), 'admin'),
    path.resolve('dist', 'admin'),
  ];
  return list.find((dir) => fs.existsSync(path.join(dir, 'index.html')));
}

/** The name under which the single-file binary carries the list of the page's files (scripts/build-binary.mjs). */
export const EMBEDDED_ADMIN_LIST = 'admin/files.json';

/**
 * The page as the single-file binary carries it (Node's single-executable assets): a binary
 * installed alone, with no dist/admin beside it, still serves /admin. Undefined elsewhere.
 */
function embedded(): Map<string, Asset> | undefined {
  if (!sea.isSea()) return undefined;
  let files: unknown;
  try {
    files = JSON.parse(sea.getAsset(EMBEDDED_ADMIN_LIST, 'utf8'));
  } catch {
    return undefined;
  }
  if (!Array.isArray(files)) return undefined;
  const assets = new Map<string, Asset>();
  for (const rel of files) {
    if (typeof rel !== 'string') continue;
    const type = TYPES[path.extname(rel)];
    if (type) assets.set(rel, asset(Buffer.from(sea.getAsset(`admin/${rel}`)), type));
  }
  return assets;
}

function asset(body: Buffer, type: string): Asset {
  return { body, type, etag: `"${createHash('sha256').update(body).digest('base64url').slice(0, 22)}"` };
}

/** Reads the built page once: it is small, and immutable until the next release. */
function load(dir: string): Map<string, Asset> {
  const assets = new Map<string, Asset>();
  const walk = (sub: string): void => {
    for (const e of fs.readdirSync(path.join(dir, sub), { withFileTypes: true })) {
      const rel = sub ? `${sub}/${e.name}` : e.name;
      if (e.isDirectory()) walk(rel);
      else {
        const type = TYPES[path.extname(e.name)];
        if (!type) continue;
        assets.set(rel, asset(fs.readFileSync(path.join(dir, rel)), type));
      }
    }
  };
  walk('');
  return assets;
}

/** The headers of every page the bridge serves a browser (admin, device sign-in, MCP consent): the admin CSP, no framing, no sniffing, no referrer. */
export function pageSecurityHeaders(reply: FastifyReply): FastifyReply {
  return reply
    .header('content-security-policy', ADMIN_CSP)
    .header('x-content-type-options', 'nosniff')
    .header('x-frame-options', 'DENY')
    .header('referrer-policy', 'no-referrer')
    .header('cross-origin-opener-policy', 'same-origin');
}

/**
 * `GET /admin` (the page) and `GET /admin/assets/*` (its scripts and styles, content-hashed names
 * cached for a year) from `dir` (findAdminAssets()), or from the single-file binary itself;
 * neither: the page is not built, and `/admin` says so. Public: the page holds no data; every API call it makes is authenticated.
 */
export function adminAssetRoutes(dir: string | undefined): FastifyPluginAsync {
  return async (app) => {
    const assets = dir ? load(dir) : (embedded() ?? new Map<string, Asset>());
    const built = dir !== undefined || assets.size > 0;
    const send = (reply: FastifyReply, name: string, ifNoneMatch: string | undefined, immutable: boolean) => {
      const a = assets.get(name);
      if (!a) {
        const text = built
          ? 'No such file.'
          : 'The admin page is not built: run `npm run build` (it writes dist/admin).';
        return pageSecurityHeaders(reply).code(404).type('text/plain; charset=utf-8').send(text);
      }
      pageSecurityHeaders(reply)
        .header('etag', a.etag)
        .header('cache-control', immutable ? 'public, max-age=31536000, immutable' : 'no-cache');
      if (ifNoneMatch === a.etag) return reply.code(304).send();
      return reply.type(a.type).send(a.body);
    };
    const config = { access: 'public' as const };
    app.get('/admin', { config }, async (req, reply) =>
      send(reply, 'index.html', req.headers['if-none-match'], false),
    );
    app.get('/admin/', { config }, async (req, reply) =>
      send(reply, 'index.html', req.headers['if-none-match'], false),
    );
    app.get<{ Params: { '*': string } }>('/admin/assets/*', { config }, async (req, reply) =>
      send(reply, `assets/${req.params['*']}`, req.headers['if-none-match'], true),
    );
  };
}
