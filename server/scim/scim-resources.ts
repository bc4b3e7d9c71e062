import type { ErrorCode } from '../../shared/errors';
import type { User } from '../../shared/identity';
import { emailKey } from '../core/email';
import { BridgeError } from '../errors';

/** SCIM 2.0 (RFC 7643/7644) schema URNs the bridge reads and writes. */
export const SCHEMAS = {
  user: 'urn:ietf:params:scim:schemas:core:2.0:User',
  group: 'urn:ietf:params:scim:schemas:core:2.0:Group',
  listResponse: 'urn:ietf:params:scim:api:messages:2.0:ListResponse',
  patchOp: 'urn:ietf:params:scim:api:messages:2.0:PatchOp',
  error: 'urn:ietf:params:scim:api:messages:2.0:Error',
  serviceProviderConfig: 'urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig',
  resourceType: 'urn:ietf:params:scim:schemas:core:2.0:ResourceType',
  schema: 'urn:ietf:params:scim:schemas:core:2.0:Schema',
} as const;

export const SCIM_CONTENT_TYPE = 'application/scim+json; charset=utf-8';

/** RFC 7644 §3.12 `scimType` values the bridge sends. */
export type ScimType =
  | 'invalidSyntax'
  | 'invalidValue'
  | 'invalidFilter'
  | 'invalidPath'
  | 'uniqueness'
  | 'noTarget';

/** A bridge error (code from the one registry) that also names its RFC 7644 `scimType`. */
export class ScimError extends BridgeError {
  constructor(
    code: ErrorCode,
    message: string,
    readonly scimType?: ScimType,
  ) {
    super(code, message);
  }
}

export function invalid(message: string, scimType: ScimType = 'invalidValue'): ScimError {
  return new ScimError('invalid_request', message, scimType);
}

/** SCIM's view of a bridge user, kept as a document (kind `scim_user`) under the bridge user id. */
export interface ScimUserDoc {
  id: string;
  /** What the identity provider calls the user (Entra ID's userName need not be an email). */
  userName: string;
  externalId: string | null;
  /** Deleted over SCIM: the bridge user stays (deactivated) for the audit trail, SCIM no longer shows it. */
  deletedAt: string | null;
}

/** A SCIM group (kind `scim_group`): its members' bridge user ids. */
export interface ScimGroupDoc {
  id: string;
  displayName: string;
  externalId: string | null;
  members: string[];
  createdAt: string;
  lastModified: string;
}

/** What a User resource sets, once read and validated. Undefined: not given. */
export interface UserInput {
  userName?: string;
  email?: string;
  name?: string | null;
  externalId?: string | null;
  active?: boolean;
}

type Json = Record<string, unknown>;

export function isObject(v: unknown): v is Json {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

const MAX_TEXT = 512;

function text(v: unknown, attr: string): string {
  if (typeof v !== 'string' || v.trim() === '' || v.length > MAX_TEXT)
    throw invalid(`"${attr}" must be a non-empty string of at most ${MAX_TEXT} characters.`);
  return v.trim();
}

function optionalText(v: unknown, attr: string): string | null {
  return v === null || v === undefined || v === '' ? null : text(v, attr);
}

/** Entra ID sent booleans as "True"/"False" strings before its 2020 compliance fix; both are read. */
function bool(v: unknown, attr: string): boolean {
  if (typeof v === 'boolean') return v;
  if (typeof v === 'string' && /^(true|false)$/i.test(v)) return v.toLowerCase() === 'true';
  throw invalid(`"${attr}" must be true or false.`);
}

const EMAIL_RE = /^[^\s@]+@[^\s@]+$/;

function primaryEmail(emails: unknown): string | undefined {
  if (emails === undefined || emails === null) return undefined;
  if (!Array.isArray(emails)) throw invalid('"emails" must be an array.');
  const list = emails.filter(isObject);
  const pick = list.find((e) => e.primary === true) ?? list.find((e) => e.type === 'work') ?? list[0];
  return pick === undefined ? undefined : text(pick.value, 'emails.value');
}

function nameOf(name: unknown): string | null | undefined {
  if (name === undefined) return undefined;
  if (name === null) return null;
  if (!isObject(name)) throw invalid('"name" must be an object.');
  if (typeof name.formatted === 'string' && name.formatted.trim() !== '')
    return text(name.formatted, 'name.formatted');
  const parts = [name.givenName, name.familyName].filter(
    (p): p is string => typeof p === 'string' && p.trim() !== '',
  );
  return parts.length > 0 ? text(parts.join(' '), 'name') : null;
}

/**
 * Reads the attributes the bridge keeps from a User resource (POST, PUT, or a PATCH value without a
 * path). Attributes the bridge does not keep (title, locale, the enterprise extension) are ignored,
 * as RFC 7643 lets a service provider do.
 */
export function readUser(body: Json): UserInput {
  const input: UserInput = {};
  if (body.userName !== undefined) input.userName = text(body.userName, 'userName');
  const email = primaryEmail(body.emails);
  if (email !== undefined) input.email = email;
  const name =
    body.displayName !== undefined ? optionalText(body.displayName, 'displayName') : nameOf(body.name);
  if (name !== undefined) input.name = name;
  if (body.externalId !== undefined) input.externalId = optionalText(body.externalId, 'externalId');
  if (body.active !== undefined) input.active = bool(body.active, 'active');
  return input;
}

/** The bridge email of a new SCIM user: the userName when it is an email (Okta), else the primary email (Entra ID). */
export function emailFor(input: UserInput): string {
  const candidate =
    input.userName !== undefined && EMAIL_RE.test(input.userName) ? input.userName : input.email;
  if (candidate === undefined || !EMAIL_RE.test(candidate))
    throw invalid('A user needs an email: "userName" or a primary entry of "emails".');
  const email = emailKey(candidate);
  if (email === undefined)
    throw invalid('The email has a character that reads as another in lower case (such as the Kelvin sign).');
  return email;
}

export interface PatchOperation {
  op: 'add' | 'replace' | 'remove';
  path: string | undefined;
  value: unknown;
}

/** The operations of a PatchOp body (RFC 7644 §3.5.2); ops are case-insensitive (Entra ID sends "Replace"). */
export function readPatch(body: Json): PatchOperation[] {
  if (!Array.isArray(body.schemas) || !body.schemas.includes(SCHEMAS.patchOp))
    throw invalid(`A PATCH body needs "schemas": ["${SCHEMAS.patchOp}"].`, 'invalidSyntax');
  const ops = body.Operations;
  if (!Array.isArray(ops) || ops.length === 0 || ops.length > 1000)
    throw invalid('A PATCH body needs "Operations": an array of 1 to 1000 operations.', 'invalidSyntax');
  return ops.map((o, i) => {
    if (!isObject(o)) throw invalid(`Operations[${i}] must be an object.`, 'invalidSyntax');
    const op = typeof o.op === 'string' ? o.op.toLowerCase() : '';
    if (op !== 'add' && op !== 'replace' && op !== 'remove')
      throw invalid(`Operations[${i}].op must be add, replace or remove.`, 'invalidSyntax');
    if (o.path !== undefined && (typeof o.path !== 'string' || o.path.length > MAX_TEXT))
      throw invalid(`Operations[${i}].path must be a string.`, 'invalidPath');
    const path = o.path === undefined || o.path === '' ? undefined : (o.path as string);
    if (path === undefined && op === 'remove')
      throw invalid(`Operations[${i}]: remove needs a path.`, 'noTarget');
    if (path === undefined && !isObject(o.value))
      throw invalid(`Operations[${i}]: without a path, the value must be an object.`, 'invalidValue');
    return { op, path, value: o.value };
  });
}

/**
 * A PATCH attribute path as the bridge compares it: lower-cased, without the resource's core schema
 * URN (RFC 7644 §3.10 lets a client qualify any attribute with it:
 * `urn:ietf:params:scim:schemas:core:2.0:User:active` is `active`).
 */
export function attributePath(path: string, schema: string): string {
  const lower = path.toLowerCase();
  const prefix = `${schema.toLowerCase()}:`;
  return lower.startsWith(prefix) ? lower.slice(prefix.length) : lower;
}

/**
 * A single-valued attribute's value. Entra ID sends an `add` of one as a one-entry list,
 * `[{"value": "…"}]` (its documented pre-2020 form, still what a job without the compliance flag sends).
 */
function singleValue(v: unknown): unknown {
  return Array.isArray(v) && v.length === 1 && isObject(v[0]) && 'value' in v[0] ? v[0].value : v;
}

/** One attribute a PATCH sets (by `path`, or as a key of a value without one) as a User resource fragment; null: not kept. */
function attributeFragment(path: string, op: PatchOperation['op'], raw: unknown): Json | null {
  const value = op === 'remove' ? null : raw;
  switch (attributePath(path, SCHEMAS.user)) {
    case 'active':
      if (op === 'remove') throw invalid('"active" cannot be removed.', 'invalidValue');
      return { active: singleValue(value) };
    case 'username':
      if (op === 'remove') throw invalid('"userName" cannot be removed.', 'invalidValue');
      return { userName: singleValue(value) };
    case 'displayname':
      return { displayName: singleValue(value) };
    case 'externalid':
      return { externalId: singleValue(value) };
    case 'name':
      return { name: value };
    case 'name.formatted':
      return { name: { formatted: singleValue(value) } };
    case 'emails[type eq "work"].value':
    case 'emails[primary eq true].value':
      return value === null ? null : { emails: [{ value: singleValue(value), primary: true }] };
    case 'emails':
      return value === null ? null : { emails: value };
    default:
      return null;
  }
}

/**
 * One PATCH operation on a user as a User resource fragment, so `readUser` validates it the same
 * way as a POST; null when it sets nothing the bridge keeps (the enterprise extension, phone
 * numbers…). A value without a path is read key by key as if each key were a path, since Entra ID
 * sends `{"op": "replace", "value": {"name.formatted": "…", "emails[type eq \"work\"].value": "…"}}`;
 * paths may carry the core schema's URN, and a value may nest attributes under it.
 */
export function userPatchFragment(o: PatchOperation): Json | null {
  if (o.path !== undefined) return attributeFragment(o.path, o.op, o.value);
  const fragment: Json = {};
  const read = (value: Json): void => {
    for (const [key, v] of Object.entries(value)) {
      if (key.toLowerCase() === SCHEMAS.user.toLowerCase() && isObject(v)) read(v);
      else Object.assign(fragment, attributeFragment(key, o.op, v));
    }
  };
  read(o.value as Json);
  return Object.keys(fragment).length > 0 ? fragment : null;
}

/** `attr eq "value"`, the one filter form identity providers send (RFC 7644 §3.4.2.2). */
export function readFilter(
  filter: string | undefined,
  attrs: readonly string[],
): { attr: string; value: string } | undefined {
  if (filter === undefined || filter === '') return undefined;
  // Entra ID matches on `emails[type eq "work"].value eq "…"` when the admin maps the work email.
  const normalised = filter.replace(/^\s*emails\[type eq "work"\]\.value(?=\s)/i, 'emails.value');
  const m = /^\s*([A-Za-z][\w.]*)\s+eq\s+"((?:[^"\\]|\\.)*)"\s*$/i.exec(normalised);
  const attr = m ? attrs.find((a) => a.toLowerCase() === m[1]!.toLowerCase()) : undefined;
  if (!m || attr === undefined)
    throw invalid(
      `Only filters of the form <attribute> eq "<value>" on ${attrs.join(', ')} are supported.`,
      'invalidFilter',
    );
  return { attr, value: m[2]!.replace(/\\(.)/g, '$1') };
}

/** RFC 7644 §3.4.2.4: `startIndex` is 1-based, `count` is at most `max`. */
export function readPage(
  q: Record<string, string | undefined>,
  max: number,
): { start: number; count: number } {
  const num = (raw: string | undefined, fallback: number): number => {
    if (raw === undefined || raw === '') return fallback;
    const n = Number(raw);
    if (!Number.isInteger(n)) throw invalid(`"${raw}" is not a whole number.`, 'invalidValue');
    return n;
  };
  return { start: Math.max(1, num(q.startIndex, 1)), count: Math.min(max, Math.max(0, num(q.count, max))) };
}

export function userResource(
  user: User,
  doc: ScimUserDoc | undefined,
  groups: readonly ScimGroupDoc[],
): Json {
  return {
    schemas: [SCHEMAS.user],
    id: user.id,
    externalId: doc?.externalId ?? undefined,
    userName: doc?.userName ?? user.email,
    name: user.name === null ? undefined : { formatted: user.name },
    displayName: user.name ?? undefined,
    emails: [{ value: user.email, type: 'work', primary: true }],
    active: !user.deactivatedAt,
    groups: groups.map((g) => ({ value: g.id, display: g.displayName, $ref: `/scim/v2/Groups/${g.id}` })),
    meta: { resourceType: 'User', created: user.createdAt, location: `/scim/v2/Users/${user.id}` },
  };
}

export function groupResource(
  g: ScimGroupDoc,
  emails: ReadonlyMap<string, string>,
  withMembers = true,
): Json {
  return {
    schemas: [SCHEMAS.group],
    id: g.id,
    externalId: g.externalId ?? undefined,
    displayName: g.displayName,
    ...(withMembers
      ? {
          members: g.members.map((id) => ({
            value: id,
            display: emails.get(id),
            $ref: `/scim/v2/Users/${id}`,
          })),
        }
      : {}),
    meta: {
      resourceType: 'Group',
      created: g.createdAt,
      lastModified: g.lastModified,
      location: `/scim/v2/Groups/${g.id}`,
    },
  };
}

export function listResponse(all: readonly Json[], page: { start: number; count: number }): Json {
  const resources = all.slice(page.start - 1, page.start - 1 + page.count);
  return {
    schemas: [SCHEMAS.listResponse],
    totalResults: all.length,
    startIndex: page.start,
    itemsPerPage: resources.length,
    Resources: resources,
  };
}
