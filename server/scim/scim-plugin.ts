import { createHash, randomUUID, timingSafeEqual } from 'node:crypto';
import type { FastifyInstance, FastifyPluginAsync, FastifyReply, FastifyRequest } from 'fastify';
import type { User } from '../../shared/identity';
import type { Capability, Core } from '../capability';
import { datesOf } from '../clock';
import { fromFastifyError, isBridgeError } from '../errors';
import { assertJsonDepth } from '../http/json-depth';
import type { Authenticator } from '../identity/auth';
import { teamAndRole } from '../identity/group-mapping';
import type { IdentityService } from '../identity/identity-service';
import { looksLikeKey } from '../identity/keys';
import type { UserPatch } from '../store/types';
import { Deprovisioner } from './deprovision';
import {
  attributePath,
  emailFor,
  groupResource,
  invalid,
  isObject,
  listResponse,
  readFilter,
  readPage,
  readPatch,
  readUser,
  SCHEMAS,
  SCIM_CONTENT_TYPE,
  ScimError,
  type ScimGroupDoc,
  type ScimUserDoc,
  type UserInput,
  userPatchFragment,
  userResource,
} from './scim-resources';

/** Where SCIM is served (RFC 7644 §3: the base URL an identity provider is given). */
export const SCIM_PREFIX = '/scim/v2';
/** The most resources one list answer holds (ServiceProviderConfig `filter.maxResults`). */
const MAX_RESULTS = 200;
/** SCIM bodies are small: a user, a group's member changes. */
const SCIM_BODY_LIMIT = 1024 * 1024;
const SCIM_MAX_DEPTH = 16;

export interface ScimCapability extends Capability {
  /** The `/scim/v2` routes (outside `/api`, behind AIBRIDGE_SCIM_TOKEN); registered only when a token is set. */
  plugin: FastifyPluginAsync;
  /**
   * Whether the identity provider pushes groups over SCIM (a token is set and a group exists): team
   * and role then follow the SCIM groups alone, and a sign-in's groups claim does not change them.
   */
  managesGroups(): Promise<boolean>;
}

export interface ScimDeps {
  auth: Authenticator;
  identity: IdentityService;
  /** Re-checks a user's live sockets on this replica now (server/events/live-plugin.ts). */
  recheckUser(userId: string): Promise<void>;
  /** Deletes the user's own credentials for MCP servers (server/mcp/hub.ts), on SCIM DELETE. */
  forgetMcpCredentials?(userId: string): Promise<void>;
}

/** Compares secrets in constant time (digests make the lengths equal). */
function sameSecret(a: string, b: string): boolean {
  const d = (s: string): Buffer => createHash('sha256').update(s).digest();
  return timingSafeEqual(d(a), d(b));
}

/** Group names compare without case, as /Schemas declares (`caseExact: false`) and clients look them up. */
function sameGroupName(a: string, b: string): boolean {
  return a.toLowerCase() === b.toLowerCase();
}

/**
 * SCIM 2.0 provisioning and deprovisioning (docs/sso.md): the identity provider creates, updates,
 * deactivates and deletes users, and its groups set their team and role. Every replica reloads
 * deactivations (to close sockets); the routes exist only when AIBRIDGE_SCIM_TOKEN is set.
 */
export function scimCapability(core: Core, d: ScimDeps): ScimCapability {
  const { store, config, log } = core;
  const now = datesOf(core.clock);
  const deprovisioner = new Deprovisioner(store, (id) => d.recheckUser(id), now);
  const token = config.scimToken;

  const scimDoc = (id: string) => store.getDoc<ScimUserDoc>('scim_user', id);
  const groups = async (): Promise<ScimGroupDoc[]> =>
    (await store.listDocs<ScimGroupDoc>('scim_group')).sort((a, b) => a.createdAt.localeCompare(b.createdAt));

  /** A user SCIM may show: a bridge user not deleted over SCIM. */
  const visibleUser = async (id: string): Promise<{ user: User; doc: ScimUserDoc | undefined }> => {
    const user = await store.getUserById(id);
    const doc = user && (await scimDoc(user.id));
    if (!user || doc?.deletedAt) throw new ScimError('user_not_found', `No user ${id}.`, 'noTarget');
    return { user, doc };
  };

  const userJson = async (user: User, doc: ScimUserDoc | undefined) =>
    userResource(
      user,
      doc,
      (await groups()).filter((g) => g.members.includes(user.id)),
    );

  /** Sets team and role from the SCIM groups of each user given, in the groups' creation order. */
  const applyGroups = async (userIds: Iterable<string>): Promise<void> => {
    const all = await groups();
    for (const id of new Set(userIds)) {
      const names = all.filter((g) => g.members.includes(id)).map((g) => g.displayName);
      const { team, role } = teamAndRole(names, config.groups);
      try {
        await d.identity.updateUser(id, { team, role });
      } catch (err) {
        if (!isBridgeError(err) || err.code !== 'last_admin') throw err;
        // Never leave the bridge without an admin: the team follows the groups, the role stays.
        log.warn({ userId: id }, 'scim: the last admin keeps the admin role though their groups say member');
        await d.identity.updateUser(id, { team });
      }
    }
  };

  /** Applies what a POST, PUT or PATCH says about an existing user. */
  const applyUser = async (user: User, doc: ScimUserDoc, input: UserInput): Promise<User> => {
    const nextDoc: ScimUserDoc = {
      ...doc,
      userName: input.userName ?? doc.userName,
      externalId: input.externalId !== undefined ? input.externalId : doc.externalId,
      deletedAt: null,
    };
    await store.putDoc('scim_user', user.id, nextDoc);
    let current = user;
    const patch: UserPatch = {};
    if (input.name !== undefined && input.name !== user.name) patch.name = input.name;
    if (Object.keys(patch).length > 0) current = (await store.updateUser(user.id, patch)) ?? current;
    if (input.active === false) current = await deprovisioner.deactivate(current);
    if (input.active === true) current = await deprovisioner.reactivate(current);
    return current;
  };

  const checkUserNameFree = async (userName: string, self: string | undefined): Promise<void> => {
    const docs = await store.listDocs<ScimUserDoc>('scim_user');
    let taken = docs.some(
      (s) => s.id !== self && s.deletedAt === null && s.userName.toLowerCase() === userName.toLowerCase(),
    );
    // A user SCIM has no record of is shown with their email as userName (userResource).
    const owner = taken ? undefined : await store.getUserByEmail(userName.toLowerCase());
    if (owner && owner.id !== self && !docs.some((s) => s.id === owner.id)) taken = true;
    if (taken)
      throw new ScimError('user_exists', `A user with userName ${userName} already exists.`, 'uniqueness');
  };

  const bodyOf = (req: FastifyRequest): Record<string, unknown> => {
    if (!isObject(req.body)) throw invalid('The body must be a JSON object.', 'invalidSyntax');
    return req.body;
  };

  const groupById = async (id: string): Promise<ScimGroupDoc> => {
    const g = await store.getDoc<ScimGroupDoc>('scim_group', id);
    if (!g) throw new ScimError('scim_group_not_found', `No group ${id}.`, 'noTarget');
    return g;
  };

  /**
   * Member ids from `[{ value }]`. To add, each must be a user SCIM shows (not one it deleted); to
   * remove, any id: an identity provider removing someone the bridge never had must not fail the
   * removal of the others.
   */
  const memberIds = async (v: unknown, removing = false): Promise<string[]> => {
    if (v === undefined || v === null) return [];
    if (!Array.isArray(v)) throw invalid('"members" must be an array of { "value": <user id> }.');
    const ids: string[] = [];
    for (const m of v) {
      if (!isObject(m) || typeof m.value !== 'string')
        throw invalid('Each member needs a "value": a user id.');
      if (!removing) {
        const user = await store.getUserById(m.value);
        if (!user || (await scimDoc(user.id))?.deletedAt)
          throw invalid(`No user ${m.value} to make a member.`);
      }
      ids.push(m.value);
    }
    return ids;
  };

  const groupName = async (v: unknown, self: string | undefined): Promise<string> => {
    if (typeof v !== 'string' || v.trim() === '' || v.length > 256)
      throw invalid('"displayName" must be a non-empty string of at most 256 characters.');
    const name = v.trim();
    // displayName is not case-exact (RFC 7643 §4.2, and /Schemas says so): "eng" is "Eng".
    if ((await groups()).some((g) => g.id !== self && sameGroupName(g.displayName, name)))
      throw new ScimError('scim_group_exists', `A group named ${name} already exists.`, 'uniqueness');
    return name;
  };

  const saveGroup = async (before: ScimGroupDoc | undefined, after: ScimGroupDoc): Promise<void> => {
    await store.putDoc('scim_group', after.id, after);
    await applyGroups([...(before?.members ?? []), ...after.members]);
  };

  const emailsById = async (): Promise<Map<string, string>> =>
    new Map((await store.listUsers()).map((u) => [u.id, u.email]));

  /**
   * Changes run one at a time on this replica: each is a read-modify-write of documents (a group's
   * members, a user's SCIM record), and an identity provider may send several at once.
   */
  let writes: Promise<unknown> = Promise.resolve();
  const exclusive =
    (fn: (req: FastifyRequest, reply: FastifyReply) => Promise<unknown>) =>
    (req: FastifyRequest, reply: FastifyReply): Promise<unknown> => {
      const run = writes.then(() => fn(req, reply));
      writes = run.catch(() => undefined);
      return run;
    };

  const send = (reply: FastifyReply, status: number, body: unknown) =>
    reply.code(status).type(SCIM_CONTENT_TYPE).send(body);

  const routes = async (app: FastifyInstance): Promise<void> => {
    const json = (
      _req: FastifyRequest,
      body: string | Buffer,
      done: (err: Error | null, v?: unknown) => void,
    ) => {
      // Some clients send a content type on a DELETE without a body.
      if (body.length === 0) return done(null, undefined);
      try {
        assertJsonDepth(body, SCIM_MAX_DEPTH);
        done(null, JSON.parse(body.toString()));
      } catch {
        done(invalid('The body is not valid JSON.', 'invalidSyntax'));
      }
    };
    app.removeAllContentTypeParsers();
    app.addContentTypeParser(
      ['application/scim+json', 'application/json'],
      { parseAs: 'string', bodyLimit: SCIM_BODY_LIMIT },
      json,
    );

    app.setErrorHandler((err, req, reply) => {
      const e = fromFastifyError(err);
      if (e.code === 'internal_error') req.log.error({ err }, 'scim request failed');
      const scimType =
        err instanceof ScimError
          ? err.scimType
          : e.status === 400
            ? 'invalidSyntax'
            : e.status === 409
              ? 'uniqueness'
              : undefined;
      if (e.status === 401) void reply.header('www-authenticate', 'Bearer realm="aibridge-scim"');
      void send(reply.headers(e.headers), e.status, {
        schemas: [SCHEMAS.error],
        status: String(e.status),
        ...(scimType ? { scimType } : {}),
        detail: e.message,
      });
    });

    app.setNotFoundHandler((req, reply) =>
      send(reply, 404, {
        schemas: [SCHEMAS.error],
        status: '404',
        detail: `No SCIM endpoint ${req.method} ${req.url.split('?')[0]}.`,
      }),
    );

    // The identity provider's token; an admin's bridge key works too (as on /metrics).
    app.addHook('onRequest', async (req) => {
      const bearer = /^Bearer\s+(\S+)\s*$/i.exec(req.headers.authorization ?? '')?.[1];
      if (bearer !== undefined && token !== undefined && sameSecret(bearer, token)) return;
      if (bearer === undefined || !looksLikeKey(bearer))
        throw new ScimError('unauthorized', 'SCIM needs the bearer token set in AIBRIDGE_SCIM_TOKEN.');
      const principal = await d.auth.authenticate({ authorization: `Bearer ${bearer}` }, req.ip);
      if (principal.user.role !== 'admin')
        throw new ScimError('forbidden', 'SCIM needs its token or an admin key.');
      req.principal = principal;
    });

    const admin = { config: { access: 'admin' as const } };

    app.get(`/ServiceProviderConfig`, admin, async (_req, reply) =>
      send(reply, 200, {
        schemas: [SCHEMAS.serviceProviderConfig],
        documentationUri: 'https://github.com/aibridge/aibridge/blob/main/docs/sso.md',
        patch: { supported: true },
        bulk: { supported: false, maxOperations: 0, maxPayloadSize: 0 },
        filter: { supported: true, maxResults: MAX_RESULTS },
        changePassword: { supported: false },
        sort: { supported: false },
        etag: { supported: false },
        authenticationSchemes: [
          {
            type: 'oauthbearertoken',
            name: 'Bearer token',
            description: 'AIBRIDGE_SCIM_TOKEN',
            primary: true,
          },
        ],
        meta: { resourceType: 'ServiceProviderConfig', location: `${SCIM_PREFIX}/ServiceProviderConfig` },
      }),
    );

    const resourceTypes = [
      { name: 'User', endpoint: '/Users', schema: SCHEMAS.user },
      { name: 'Group', endpoint: '/Groups', schema: SCHEMAS.group },
    ].map((t) => ({
      schemas: [SCHEMAS.resourceType],
      id: t.name,
      name: t.name,
      endpoint: t.endpoint,
      schema: t.schema,
      meta: { resourceType: 'ResourceType', location: `${SCIM_PREFIX}/ResourceTypes/${t.name}` },
    }));
    app.get(`/ResourceTypes`, admin, async (_req, reply) =>
      send(reply, 200, listResponse(resourceTypes, { start: 1, count: resourceTypes.length })),
    );
    // Each document at the `meta.location` the list gives it (RFC 7644 §4): validators fetch them.
    app.get(`/ResourceTypes/:name`, admin, async (req, reply) => {
      const { name } = req.params as { name: string };
      const t = resourceTypes.find((r) => r.name === name);
      if (!t) throw new ScimError('not_found', `No SCIM resource type ${JSON.stringify(name)}.`);
      return send(reply, 200, t);
    });

    const attr = (name: string, extra: Record<string, unknown> = {}) => ({
      name,
      type: 'string',
      multiValued: false,
      required: false,
      caseExact: false,
      mutability: 'readWrite',
      returned: 'default',
      uniqueness: 'none',
      ...extra,
    });
    const schemas = [
      {
        id: SCHEMAS.user,
        name: 'User',
        attributes: [
          attr('userName', { required: true, uniqueness: 'server' }),
          attr('displayName'),
          attr('externalId', { caseExact: true }),
          attr('active', { type: 'boolean' }),
          attr('emails', { type: 'complex', multiValued: true }),
          attr('name', { type: 'complex' }),
        ],
      },
      {
        id: SCHEMAS.group,
        name: 'Group',
        attributes: [
          attr('displayName', { required: true, uniqueness: 'server' }),
          attr('externalId', { caseExact: true }),
          attr('members', { type: 'complex', multiValued: true }),
        ],
      },
    ].map((s) => ({
      schemas: [SCHEMAS.schema],
      ...s,
      meta: { resourceType: 'Schema', location: `${SCIM_PREFIX}/Schemas/${s.id}` },
    }));
    app.get(`/Schemas`, admin, async (_req, reply) =>
      send(reply, 200, listResponse(schemas, { start: 1, count: schemas.length })),
    );
    app.get(`/Schemas/:id`, admin, async (req, reply) => {
      const { id } = req.params as { id: string };
      const schema = schemas.find((s) => s.id === id);
      if (!schema) throw new ScimError('not_found', `No SCIM schema ${JSON.stringify(id)}.`);
      return send(reply, 200, schema);
    });

    // Users

    app.get(`/Users`, admin, async (req, reply) => {
      const q = req.query as Record<string, string | undefined>;
      const filter = readFilter(q.filter, ['userName', 'externalId', 'id', 'emails.value']);
      const page = readPage(q, MAX_RESULTS);
      const docs = new Map((await store.listDocs<ScimUserDoc>('scim_user')).map((s) => [s.id, s]));
      const all = await groups();
      const matches = (await store.listUsers()).filter((u) => {
        const doc = docs.get(u.id);
        if (doc?.deletedAt) return false;
        if (!filter) return true;
        const v = filter.value.toLowerCase();
        switch (filter.attr) {
          case 'userName':
            return (doc?.userName ?? u.email).toLowerCase() === v;
          case 'externalId':
            return doc?.externalId === filter.value;
          case 'id':
            return u.id === filter.value;
          default:
            return u.email === v;
        }
      });
      const resources = matches.map((u) =>
        userResource(
          u,
          docs.get(u.id),
          all.filter((g) => g.members.includes(u.id)),
        ),
      );
      return send(reply, 200, listResponse(resources, page));
    });

    app.get(`/Users/:id`, admin, async (req, reply) => {
      const { user, doc } = await visibleUser((req.params as { id: string }).id);
      return send(reply, 200, await userJson(user, doc));
    });

    app.post(
      `/Users`,
      admin,
      exclusive(async (req, reply) => {
        const input = readUser(bodyOf(req));
        if (input.userName === undefined) throw invalid('"userName" is required.');
        const email = emailFor(input);
        await checkUserNameFree(input.userName, undefined);
        const existing = await store.getUserByEmail(email);
        const existingDoc = existing && (await scimDoc(existing.id));
        // A user deleted over SCIM comes back as the same bridge user (same id, same audit trail).
        if (existing && !existingDoc?.deletedAt)
          throw new ScimError('user_exists', `A user with email ${email} already exists.`, 'uniqueness');
        const user =
          existing ?? (await d.identity.createUser({ email, ...(input.name ? { name: input.name } : {}) }));
        const doc: ScimUserDoc = { id: user.id, userName: input.userName, externalId: null, deletedAt: null };
        let saved = await applyUser(user, doc, { ...input, active: input.active ?? true });
        // A user deleted over SCIM comes back in no group, whatever they were before.
        if (existing) {
          await applyGroups([user.id]);
          saved = (await store.getUserById(user.id)) ?? saved;
        }
        return send(reply, 201, await userJson(saved, await scimDoc(user.id)));
      }),
    );

    app.put(
      `/Users/:id`,
      admin,
      exclusive(async (req, reply) => {
        const { user, doc } = await visibleUser((req.params as { id: string }).id);
        const input = readUser(bodyOf(req));
        if (input.userName === undefined) throw invalid('"userName" is required.');
        await checkUserNameFree(input.userName, user.id);
        // PUT replaces: what it leaves out is cleared.
        // Except `active`: a PUT that leaves it out (the user's other attributes synced) must not
        // bring back a user the provider deactivated.
        const full: UserInput = { externalId: null, name: null, ...input };
        const base: ScimUserDoc = doc ?? {
          id: user.id,
          userName: user.email,
          externalId: null,
          deletedAt: null,
        };
        const saved = await applyUser(user, base, full);
        return send(reply, 200, await userJson(saved, await scimDoc(user.id)));
      }),
    );

    app.patch(
      `/Users/:id`,
      admin,
      exclusive(async (req, reply) => {
        const { user, doc } = await visibleUser((req.params as { id: string }).id);
        const ops = readPatch(bodyOf(req));
        // Every operation is validated before anything changes.
        const input: UserInput = {};
        for (const o of ops) {
          const fragment = userPatchFragment(o);
          if (fragment !== null) Object.assign(input, readUser(fragment));
        }
        if (input.userName !== undefined) await checkUserNameFree(input.userName, user.id);
        const base: ScimUserDoc = doc ?? {
          id: user.id,
          userName: user.email,
          externalId: null,
          deletedAt: null,
        };
        const saved = await applyUser(user, base, input);
        return send(reply, 200, await userJson(saved, await scimDoc(user.id)));
      }),
    );

    app.delete(
      `/Users/:id`,
      admin,
      exclusive(async (req, reply) => {
        const { user, doc } = await visibleUser((req.params as { id: string }).id);
        await deprovisioner.deactivate(user);
        // Deactivation keeps them (a user brought back finds their connections); deletion does not.
        await d.forgetMcpCredentials?.(user.id);
        await store.putDoc<ScimUserDoc>('scim_user', user.id, {
          id: user.id,
          userName: doc?.userName ?? user.email,
          externalId: doc?.externalId ?? null,
          deletedAt: now().toISOString(),
        });
        for (const g of await groups())
          if (g.members.includes(user.id))
            await store.putDoc('scim_group', g.id, { ...g, members: g.members.filter((m) => m !== user.id) });
        // In no group now: no team and no admin role, so whoever is created again with that email
        // (a rehire, a recycled address) starts as a member.
        await applyGroups([user.id]);
        return reply.code(204).send();
      }),
    );

    // Groups

    app.get(`/Groups`, admin, async (req, reply) => {
      const q = req.query as Record<string, string | undefined>;
      const filter = readFilter(q.filter, ['displayName', 'externalId', 'id']);
      const page = readPage(q, MAX_RESULTS);
      const withMembers = !(q.excludedAttributes ?? '')
        .split(',')
        .some((a) => a.trim().toLowerCase() === 'members');
      const emails = await emailsById();
      const matches = (await groups()).filter((g) => {
        if (!filter) return true;
        if (filter.attr === 'displayName') return sameGroupName(g.displayName, filter.value);
        if (filter.attr === 'externalId') return g.externalId === filter.value;
        return g.id === filter.value;
      });
      return send(
        reply,
        200,
        listResponse(
          matches.map((g) => groupResource(g, emails, withMembers)),
          page,
        ),
      );
    });

    app.get(`/Groups/:id`, admin, async (req, reply) => {
      const g = await groupById((req.params as { id: string }).id);
      return send(reply, 200, groupResource(g, await emailsById()));
    });

    app.post(
      `/Groups`,
      admin,
      exclusive(async (req, reply) => {
        const body = bodyOf(req);
        const at = now().toISOString();
        const g: ScimGroupDoc = {
          id: `grp_${randomUUID().replaceAll('-', '').slice(0, 20)}`,
          displayName: await groupName(body.displayName, undefined),
          externalId: typeof body.externalId === 'string' ? body.externalId : null,
          members: [...new Set(await memberIds(body.members))],
          createdAt: at,
          lastModified: at,
        };
        await saveGroup(undefined, g);
        return send(reply, 201, groupResource(g, await emailsById()));
      }),
    );

    app.put(
      `/Groups/:id`,
      admin,
      exclusive(async (req, reply) => {
        const before = await groupById((req.params as { id: string }).id);
        const body = bodyOf(req);
        const g: ScimGroupDoc = {
          ...before,
          displayName: await groupName(body.displayName, before.id),
          externalId: typeof body.externalId === 'string' ? body.externalId : null,
          members: [...new Set(await memberIds(body.members))],
          lastModified: now().toISOString(),
        };
        await saveGroup(before, g);
        return send(reply, 200, groupResource(g, await emailsById()));
      }),
    );

    app.patch(
      `/Groups/:id`,
      admin,
      exclusive(async (req, reply) => {
        const before = await groupById((req.params as { id: string }).id);
        const g: ScimGroupDoc = { ...before, members: [...before.members] };
        for (const o of readPatch(bodyOf(req))) {
          const path = o.path === undefined ? undefined : attributePath(o.path, SCHEMAS.group);
          if (path === undefined) {
            // Okta renames with { op: replace, value: { id, displayName } }.
            const v = o.value as Record<string, unknown>;
            if (v.displayName !== undefined) g.displayName = await groupName(v.displayName, g.id);
            if (v.externalId !== undefined)
              g.externalId = typeof v.externalId === 'string' ? v.externalId : null;
            if (v.members !== undefined) {
              const ids = await memberIds(v.members);
              g.members = o.op === 'add' ? [...g.members, ...ids] : ids;
            }
          } else if (path === 'displayname') {
            g.displayName = await groupName(o.value, g.id);
          } else if (path === 'externalid') {
            g.externalId = typeof o.value === 'string' ? o.value : null;
          } else if (path === 'members') {
            const ids = await memberIds(o.value, o.op === 'remove');
            if (o.op === 'add') g.members.push(...ids);
            else if (o.op === 'replace') g.members = ids;
            // Entra ID removes with a value list; without one, every member goes.
            else g.members = o.value === undefined ? [] : g.members.filter((m) => !ids.includes(m));
          } else {
            // Okta removes one member with a path filter: members[value eq "<id>"].
            const m = /^members\[value eq "([^"]+)"\]$/i.exec(o.path ?? '');
            if (!m || o.op !== 'remove')
              throw invalid(`Unsupported path "${o.path}" on a group.`, 'invalidPath');
            g.members = g.members.filter((id) => id !== m[1]);
          }
        }
        g.members = [...new Set(g.members)];
        g.lastModified = now().toISOString();
        await saveGroup(before, g);
        return send(reply, 200, groupResource(g, await emailsById()));
      }),
    );

    app.delete(
      `/Groups/:id`,
      admin,
      exclusive(async (req, reply) => {
        const g = await groupById((req.params as { id: string }).id);
        await store.deleteDoc('scim_group', g.id);
        await applyGroups(g.members);
        return reply.code(204).send();
      }),
    );
  };

  return {
    plugin: async (app) => {
      if (token === undefined) return;
      // Its own scope: SCIM's content type, error shape and token apply to these routes only.
      await app.register(routes, { prefix: SCIM_PREFIX });
    },
    reload: { user_deactivation: () => deprovisioner.reload() },
    managesGroups: async () => token !== undefined && (await groups()).length > 0,
  };
}
