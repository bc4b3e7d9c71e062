import { type Static, Type } from '@sinclair/typebox';
import type { FastifyPluginAsync, FastifyReply } from 'fastify';
import { pageSecurityHeaders } from '../admin/assets';
import { principalOf } from '../http/access';
import { escapeHtml } from '../http/html';
import type { McpHub } from './hub';
import { CALLBACK_PATH } from './oauth';
import { McpServerBody, type McpServerBodyT } from './servers';

const NameParams = Type.Object({ name: Type.String({ minLength: 1, maxLength: 32 }) });
const ServerParams = Type.Object({ server: Type.String({ minLength: 1, maxLength: 32 }) });
const TokenBody = Type.Object(
  { token: Type.String({ minLength: 1, maxLength: 16_384 }) },
  { additionalProperties: false },
);
const CallbackQuery = Type.Object({
  state: Type.String({ minLength: 1, maxLength: 200 }),
  code: Type.Optional(Type.String({ minLength: 1, maxLength: 4096 })),
  error: Type.Optional(Type.String({ maxLength: 200 })),
  error_description: Type.Optional(Type.String({ maxLength: 1000 })),
});

/** A page for the browser: the admin pages' security headers (no framing: the confirmation is a click). */
function htmlPage(reply: FastifyReply): FastifyReply {
  return pageSecurityHeaders(reply).type('text/html; charset=utf-8');
}

function page(title: string, text: string, form = ''): string {
  return `<!doctype html><meta charset="utf-8"><title>${escapeHtml(title)}</title><h1>${escapeHtml(title)}</h1><p>${escapeHtml(text)}</p>${form}`;
}

/**
 * The callback's confirmation: the code is exchanged only once the browser's user confirms the
 * bridge account it will be connected to. Without it, a member could send a colleague their own
 * authorisation link; a server that approves a returning user without a prompt would send the
 * colleague's code back, and the colleague's account would be connected to the member's
 * (docs/mcp.md#per-user-oauth).
 */
function confirmPage(server: string, email: string, state: string, code: string): string {
  return page(
    `Connect ${server} to ${email}?`,
    `AI Bridge will use the ${server} account you just signed in to whenever ${email} calls its tools. ` +
      `If you are not ${email}, or did not start this yourself, close this tab.`,
    `<form method="post"><input type="hidden" name="state" value="${escapeHtml(state)}">` +
      `<input type="hidden" name="code" value="${escapeHtml(code)}">` +
      `<button type="submit">Connect ${escapeHtml(server)} to ${escapeHtml(email)}</button></form>`,
  );
}

const CallbackForm = Type.Object({
  state: Type.String({ minLength: 1, maxLength: 200 }),
  code: Type.String({ minLength: 1, maxLength: 4096 }),
});

/**
 * MCP servers (admin) and each user's own credentials for them (docs/mcp.md). Secrets go in and are
 * never shown again: reads say only whether one is set.
 */
export function mcpRoutes(hub: McpHub): FastifyPluginAsync {
  return async (app) => {
    app.get('/api/v1/mcp/servers', { config: { access: 'admin' } }, async () => ({
      items: hub.listServers(),
    }));

    app.get<{ Params: Static<typeof NameParams> }>(
      '/api/v1/mcp/servers/:name',
      { config: { access: 'admin' }, schema: { params: NameParams } },
      async (req) => hub.getServer(req.params.name),
    );

    app.put<{ Params: Static<typeof NameParams>; Body: McpServerBodyT }>(
      '/api/v1/mcp/servers/:name',
      { config: { access: 'admin' }, schema: { params: NameParams, body: McpServerBody } },
      async (req) => hub.putServer(req.params.name, req.body),
    );

    app.delete<{ Params: Static<typeof NameParams> }>(
      '/api/v1/mcp/servers/:name',
      { config: { access: 'admin' }, schema: { params: NameParams } },
      async (req, reply) => {
        await hub.deleteServer(req.params.name);
        return reply.code(204).send();
      },
    );

    app.get('/api/v1/me/mcp', { config: { access: 'member' } }, async (req) => ({
      items: hub.userView(principalOf(req).user.id),
    }));

    app.put<{ Params: Static<typeof ServerParams>; Body: Static<typeof TokenBody> }>(
      '/api/v1/me/mcp/:server/credentials',
      { config: { access: 'member' }, schema: { params: ServerParams, body: TokenBody } },
      async (req, reply) => {
        await hub.putToken(req.params.server, principalOf(req).user.id, req.body.token);
        return reply.code(204).send();
      },
    );

    app.delete<{ Params: Static<typeof ServerParams> }>(
      '/api/v1/me/mcp/:server/credentials',
      { config: { access: 'member' }, schema: { params: ServerParams } },
      async (req, reply) => {
        await hub.deleteCredential(req.params.server, principalOf(req).user.id);
        return reply.code(204).send();
      },
    );

    app.post<{ Params: Static<typeof ServerParams> }>(
      '/api/v1/me/mcp/:server/oauth',
      { config: { access: 'member' }, schema: { params: ServerParams } },
      async (req) =>
        hub.startOAuth(req.params.server, principalOf(req).user.id, `${req.protocol}://${req.host}`),
    );

    // The authorisation server sends the user's browser here: no bridge key, the state is the proof.
    app.get<{ Querystring: Static<typeof CallbackQuery> }>(
      CALLBACK_PATH,
      { config: { access: 'public' }, schema: { querystring: CallbackQuery } },
      async (req, reply) => {
        const { state, code, error, error_description: why } = req.query;
        if (!code) {
          return htmlPage(reply)
            .code(400)
            .send(page('Authorisation refused', why ?? error ?? 'The server sent no authorisation code.'));
        }
        const pending = await hub.pendingOAuth(state);
        if (!pending)
          return htmlPage(reply)
            .code(400)
            .send(page('Authorisation expired', 'This authorisation is unknown or expired; start it again.'));
        // Not to be framed: the confirmation is what stops a member connecting a colleague's
        // account to their own, and a framed button could be clicked for them.
        return htmlPage(reply)
          .header('cache-control', 'no-store')
          .send(confirmPage(pending.server, pending.email, state, code));
      },
    );

    // The confirmation page's form: the code is exchanged here, once. Its own scope, so no other
    // route of this plugin takes a form body (a cross-site form may post one).
    await app.register(async (form) => {
      form.addContentTypeParser(
        'application/x-www-form-urlencoded',
        { parseAs: 'string', bodyLimit: 8192 },
        (_req, body, done) => done(null, Object.fromEntries(new URLSearchParams(body as string))),
      );
      form.post<{ Body: Static<typeof CallbackForm> }>(
        CALLBACK_PATH,
        { config: { access: 'public' }, schema: { body: CallbackForm } },
        async (req, reply) => {
          const { server } = await hub.finishOAuth(req.body.state, req.body.code);
          return htmlPage(reply).send(
            page('Connected', `AI Bridge can now use ${server} for you. You can close this tab.`),
          );
        },
      );
    });
  };
}
