import { lookup } from 'node:dns/promises';
import { isIP } from 'node:net';
import { hostname } from 'node:os';
import { parseArgs } from 'node:util';
import { setGlobalDispatcher } from 'undici';
import type { CreatedKey, User } from '../shared/identity';
import { buildApp } from './app';
import { bootstrapAdmin } from './bootstrap';
import { type AdminTarget, CliError, callApi, resolveTarget, streamApi } from './cli/admin-client';
import { commandFirst } from './cli/argv';
import { credentialsPath, envExports, login, readCredentials } from './cli/device-login';
import {
  adminClientEnv,
  baseUrlWarnings,
  ConfigError,
  databaseUrl,
  debugLogging,
  heapWarnings,
  loadConfig,
  trustWarnings,
  unknownEnvWarnings,
} from './config';
import { describeEgress, noProxyWarnings, outboundDispatcher } from './http/egress-proxy';
import { startUpDone } from './start-up-heap';
import { DataDirLockedError } from './store/embedded/dir-lock';

/** A signal within this long of the first is the same request to stop (npm forwarding Ctrl-C). */
const REPEATED_SIGNAL_MS = 1000;

const USAGE = `Usage:
  aibridge serve [--host H] [--port P] [--data-dir D] [--body-limit BYTES] [--metrics-port P]
  aibridge users create --email E [--name N] [--team T] [--role admin|member]
  aibridge users update --email E [--name N] [--team T] [--role admin|member]
  aibridge users list
  aibridge keys create --email E [--name N] [--expires-at ISO-8601]
  aibridge keys list --email E
  aibridge keys revoke ID [ID ...]
  aibridge audit verify [--kept SEQ:HASH]
  aibridge audit export [--format jsonl|csv] [--kind interceptions|gateway-calls] [--since ISO] [--until ISO] [--user E] > FILE
  aibridge login --url URL [--name DEVICE]
  aibridge env [--shell posix|fish]
  aibridge migrate [--database-url postgres://...]
  aibridge store copy --from DATA-DIR --to postgres://...
  aibridge store backup [--data-dir DIR] --to NEW-DIR

Admin commands take --url (AIBRIDGE_URL) and --admin-key (AIBRIDGE_ADMIN_KEY); by default they use
http://127.0.0.1:7410 and <data-dir>/admin.key. See docs/cli.md.`;

const ADMIN_OPTIONS = {
  url: { type: 'string' },
  'admin-key': { type: 'string' },
  'data-dir': { type: 'string' },
  email: { type: 'string' },
  name: { type: 'string' },
  team: { type: 'string' },
  role: { type: 'string' },
  'expires-at': { type: 'string' },
  format: { type: 'string' },
  kind: { type: 'string' },
  since: { type: 'string' },
  until: { type: 'string' },
  user: { type: 'string' },
  kept: { type: 'string' },
} as const;

/**
 * A key's name as one cell of a tab-separated line: a device names its own key (`aibridge login
 * --name`), so tabs, line breaks and escape sequences (which would act on the admin's terminal)
 * become U+FFFD; `-` for none.
 */
function printableName(name: string | null): string {
  // biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what it finds
  return name === null || name === '' ? '-' : name.replace(/[\x00-\x1f\x7f-\x9f]/g, '\uFFFD');
}

async function serve(args: string[]): Promise<void> {
  const { values } = parseArgs({
    args,
    options: {
      host: { type: 'string' },
      port: { type: 'string' },
      'data-dir': { type: 'string' },
      'body-limit': { type: 'string' },
      'metrics-port': { type: 'string' },
    },
    strict: true,
  });
  const config = loadConfig(values, process.env);
  await checkListenHosts(config);
  // Every outbound call made without a dispatcher of its own (the identity provider, MCP servers
  // over HTTP, alert webhooks: global fetch and undici's request) goes the proxy's way too.
  if (config.egressProxy) setGlobalDispatcher(outboundDispatcher(config.egressProxy));
  // Hoisted: a lost data dir lock (embedded store) stops the bridge as a signal would, exit 1;
  // one lost before the handlers are in place is kept for them.
  let lostEarly: string | undefined;
  let onStoreLost = (reason: string): void => {
    lostEarly = reason;
  };
  const bridge = await buildApp(config, { onStoreLost: (reason) => onStoreLost(reason) });
  for (const w of [
    ...unknownEnvWarnings(process.env),
    ...baseUrlWarnings(process.env),
    ...heapWarnings(config, process.env),
    ...trustWarnings(config),
  ])
    bridge.app.log.warn(w);
  if (config.egressProxy) {
    bridge.app.log.info(
      { egressProxy: describeEgress(config.egressProxy) },
      'outbound calls go through the egress proxy',
    );
    for (const w of noProxyWarnings(config.egressProxy)) bridge.app.log.warn(w);
  }
  const created = await bootstrapAdmin(bridge.identity, config.dataDir, config.adminEmail);
  let stoppingAt: number | undefined;
  const stop = (signal: string): void => {
    if (stoppingAt !== undefined) {
      // Ctrl-C under `npm start` signals both npm and the bridge, and npm passes its own on a moment
      // later: that one is the same request, not an impatient second one.
      if (Date.now() - stoppingAt < REPEATED_SIGNAL_MS) return;
      process.stderr.write(`aibridge: second ${signal}, exiting now\n`);
      process.exit(1);
    }
    stoppingAt = Date.now();
    bridge.app.log.info({ signal, graceMs: config.shutdownGraceMs }, 'shutting down: draining open streams');
    const force = setTimeout(() => {
      const n = bridge.endOpenExchanges();
      bridge.app.log.warn({ exchanges: n }, 'grace period over: ending open streams with an error event');
      // Give the error events a moment to reach clients, then drop whatever is left.
      setTimeout(() => bridge.app.server.closeAllConnections(), 1000).unref();
    }, config.shutdownGraceMs);
    force.unref();
    bridge.close().then(
      // Records the store refused to the end were lost: a supervisor must not take it for a clean stop.
      () => process.exit(bridge.recorder.unrecordedAtClose > 0 ? 1 : (process.exitCode ?? 0)),
      (err: unknown) => {
        bridge.app.log.error({ err }, 'shutdown failed');
        process.exit(1);
      },
    );
  };
  // Before the listening line: a supervisor that signals as soon as it reads it must find the
  // handlers in place (without them node's default ends the process at once, nothing flushed).
  onStoreLost = () => {
    process.exitCode = 1;
    stop('data dir lock lost');
  };
  if (lostEarly !== undefined) onStoreLost(lostEarly);
  process.on('SIGINT', () => stop('SIGINT'));
  process.on('SIGTERM', () => stop('SIGTERM'));
  // A closed terminal or a supervisor's hang-up: node's default ended the process at once, cutting
  // streams and losing their records. The bridge reloads nothing on it; it stops as on SIGTERM.
  process.on('SIGHUP', () => stop('SIGHUP'));

  let address: string;
  try {
    address = await bridge.listen(config.host, config.port);
  } catch (err) {
    // A bridge that never started shows no "shown once" key; the next start will not show it either.
    if (created)
      process.stderr.write(
        `aibridge: created admin user ${config.adminEmail}; its key is in ${config.dataDir}/admin.key\n`,
      );
    throw err;
  }
  if (created) {
    // The one time a secret is printed, by design: the admin needs it to issue the first keys.
    // After the port is bound, before the listening line (which those who read the key wait for).
    process.stdout.write(
      `Created admin user ${config.adminEmail}. Admin key (shown once, also saved to ${config.dataDir}/admin.key):\n${created.key}\n`,
    );
  }
  // Before the listening line: a supervisor must not see the bridge started and then exit.
  const metricsAt =
    config.metricsPort === undefined
      ? undefined
      : await bridge.listenMetrics(config.metricsHost, config.metricsPort).catch((err: unknown) => {
          throw metricsListenFailure(err);
        });
  const { port } = new URL(address);
  const host = config.host.includes(':') ? `[${config.host}]` : config.host;
  process.stdout.write(`aibridge listening on http://${host}:${port}\n`);
  startUpDone();
  if (metricsAt !== undefined) process.stdout.write(`aibridge metrics on ${metricsAt}\n`);
}

/**
 * Each host the bridge will listen on resolves. Checked before the store opens, which takes seconds
 * with a large journal and makes the first admin: a mistyped host fails at once, with nothing made.
 */
async function checkListenHosts(config: { host: string; metricsHost: string; metricsPort?: number }) {
  const hosts: [string, string][] = [[config.host, '--host (AIBRIDGE_HOST)']];
  if (config.metricsPort !== undefined) hosts.push([config.metricsHost, 'AIBRIDGE_METRICS_HOST']);
  for (const [host, setting] of hosts) {
    if (isIP(host) !== 0) continue;
    try {
      await lookup(host);
    } catch (err) {
      throw new Error(`${unresolved(err, host)}: check ${setting}`);
    }
  }
}

/** A host name the resolver did not find, in words (getaddrinfo's ENOTFOUND, or EAI_AGAIN when no DNS answered). */
function unresolved(err: unknown, host: string): string {
  const code = (err as NodeJS.ErrnoException | undefined)?.code ?? 'error';
  return `${host} does not resolve (${code === 'EAI_AGAIN' ? 'no DNS server answered' : code})`;
}

/** The metrics listener's failure, naming its own settings rather than --port's. */
function metricsListenFailure(err: unknown): Error {
  const e = err as NodeJS.ErrnoException & { address?: string; port?: number };
  if (e?.code === 'EADDRINUSE')
    return new Error(
      `${e.address ?? 'the address'}:${e.port ?? '?'} is already in use: choose another --metrics-port (AIBRIDGE_METRICS_PORT)`,
    );
  if (e?.code === 'EADDRNOTAVAIL')
    return new Error(
      `${e.address ?? 'the address'} is not an address of this machine: check AIBRIDGE_METRICS_HOST`,
    );
  return new Error(
    `the metrics listener could not start: ${err instanceof Error ? err.message : String(err)}`,
  );
}

function out(line: string): void {
  process.stdout.write(`${line}\n`);
}

function need(value: string | undefined, flag: string): string {
  if (!value) throw new CliError(`${flag} is required`);
  return value;
}

function printUser(u: User): void {
  process.stdout.write(`${JSON.stringify(u, null, 2)}\n`);
}

/** The admin commands each command word takes, checked before a bridge or key is looked for. */
const ADMIN_COMMANDS: Readonly<Record<string, readonly string[]>> = {
  users: ['create', 'update', 'list'],
  keys: ['create', 'list', 'revoke'],
  audit: ['verify', 'export'],
};

/** Where every admin command finds the bridge and its key. */
const TARGET_FLAGS: readonly string[] = ['url', 'admin-key', 'data-dir'];

/**
 * The flags each admin command takes besides TARGET_FLAGS (docs/cli.md). The commands share one
 * parser, so without this `audit export --team T` exported every team's records, the flag dropped.
 */
const COMMAND_FLAGS: Readonly<Record<string, readonly (keyof typeof ADMIN_OPTIONS)[]>> = {
  'users create': ['email', 'name', 'team', 'role'],
  'users update': ['email', 'name', 'team', 'role'],
  'users list': [],
  'keys create': ['email', 'name', 'expires-at'],
  'keys list': ['email'],
  'keys revoke': [],
  'audit verify': ['kept'],
  'audit export': ['format', 'kind', 'since', 'until', 'user'],
};

async function admin(command: string, sub: string | undefined, args: string[]): Promise<void> {
  if (sub === undefined || !ADMIN_COMMANDS[command]?.includes(sub))
    throw new CliError(
      `${sub === undefined || sub.startsWith('-') ? `${command} needs one of: ${ADMIN_COMMANDS[command]?.join(', ')}` : `unknown command: ${command} ${sub}`}\n${USAGE}`,
    );
  const { values, positionals } = parseArgs({
    args,
    options: ADMIN_OPTIONS,
    allowPositionals: true,
    strict: true,
  });
  const takes = COMMAND_FLAGS[`${command} ${sub}`] ?? [];
  const foreign = Object.keys(values).find(
    (f) => !TARGET_FLAGS.includes(f) && !(takes as readonly string[]).includes(f),
  );
  if (foreign !== undefined)
    throw new CliError(
      `${command} ${sub} takes no --${foreign}${takes.length > 0 ? ` (it takes ${takes.map((f) => `--${f}`).join(', ')})` : ''}\n${USAGE}`,
    );
  // Only `keys revoke` takes arguments (key ids): one given to any other command was a mistake the
  // command would have ignored (`users list extra` ran as `users list`).
  if (positionals.length > 0 && `${command} ${sub}` !== 'keys revoke')
    throw new CliError(
      `${command} ${sub} takes no arguments (got ${JSON.stringify(positionals[0])})\n${USAGE}`,
    );
  const target: AdminTarget = resolveTarget(values, adminClientEnv(process.env));
  const email = (): string => encodeURIComponent(need(values.email, '--email'));
  switch (`${command} ${sub ?? ''}`) {
    case 'users create': {
      const body = {
        email: need(values.email, '--email'),
        name: values.name,
        team: values.team,
        role: values.role,
      };
      printUser((await callApi(target, 'POST', '/api/v1/users', body)) as User);
      return;
    }
    case 'users update': {
      // Only the flags given change; `--team ''` takes the user out of their team.
      const body = {
        ...(values.name !== undefined ? { name: values.name } : {}),
        ...(values.team !== undefined ? { team: values.team === '' ? null : values.team } : {}),
        ...(values.role !== undefined ? { role: values.role } : {}),
      };
      if (Object.keys(body).length === 0)
        throw new CliError('users update changes nothing without --name, --team or --role');
      printUser((await callApi(target, 'PATCH', `/api/v1/users/${email()}`, body)) as User);
      return;
    }
    case 'users list': {
      const { items } = (await callApi(target, 'GET', '/api/v1/users')) as { items: User[] };
      // A user the identity provider deactivated is refused everywhere: say so, in a column after
      // the four there always were, so scripts that cut them keep working.
      for (const u of items)
        process.stdout.write(
          `${u.id}\t${u.email}\t${u.role}\t${u.team ?? '-'}${u.deactivatedAt ? `\tdeactivated ${u.deactivatedAt}` : ''}\n`,
        );
      return;
    }
    case 'keys create': {
      const body = { name: values.name, expiresAt: dayStart(values['expires-at']) };
      const k = (await callApi(target, 'POST', `/api/v1/users/${email()}/keys`, body)) as CreatedKey;
      process.stderr.write(
        `Key ${k.id} (${k.prefix}…) for ${values.email}, expires ${k.expiresAt ?? 'never'}. Shown once:\n`,
      );
      process.stdout.write(`${k.key}\n`);
      return;
    }
    case 'keys list': {
      const { items } = (await callApi(target, 'GET', `/api/v1/users/${email()}/keys`)) as {
        items: {
          id: string;
          prefix: string;
          revokedAt: string | null;
          expiresAt: string | null;
          lastUsedAt: string | null;
          name: string | null;
        }[];
      };
      for (const k of items) {
        const state = k.revokedAt
          ? 'revoked'
          : k.expiresAt && Date.parse(k.expiresAt) < Date.now()
            ? 'expired'
            : 'active';
        process.stdout.write(
          `${k.id}\t${k.prefix}…\t${state}\tlast used ${k.lastUsedAt ?? 'never'}\t${printableName(k.name)}\n`,
        );
      }
      return;
    }
    case 'audit verify': {
      const kept = values.kept;
      if (kept !== undefined && !/^[0-9]{1,15}:[0-9a-f]{64}$/.test(kept))
        throw new CliError(`--kept takes SEQ:HASH, a head an earlier verify printed (got ${kept})`);
      const r = (await callApi(
        target,
        'GET',
        `/api/v1/audit/verify${kept === undefined ? '' : `?kept=${kept}`}`,
      )) as {
        ok: boolean;
        checked: number;
        firstBreak: { seq: number; id: string; reason: string } | null;
        head: { seq: number; hash: string } | null;
        newest?: { seq: number; hash: string } | null;
        truncated?: { missing: number; lastSeq: number; headSeq: number } | null;
        kept?: { seq: number; hash: string; checked: boolean };
      };
      if (r.ok) {
        process.stdout.write(`ok: ${r.checked} records, chain intact\n`);
        // What to keep outside the bridge and pass back as --kept next time (docs/audit.md): the
        // newest record checked, which the store's own head may trail.
        const keep = r.newest ?? r.head;
        if (keep) process.stdout.write(`head: ${keep.seq}:${keep.hash}\n`);
        if (r.kept && !r.kept.checked)
          process.stdout.write(
            `kept head ${r.kept.seq} not compared: that record was pruned or predates the chain\n`,
          );
      } else if (r.firstBreak) {
        const b = r.firstBreak;
        process.stdout.write(
          `BROKEN at record ${b.seq} (${b.id}): ${b.reason}; ${r.checked} records checked\n`,
        );
        process.exitCode = 3;
      } else if (r.truncated) {
        const t = r.truncated;
        process.stdout.write(
          `TRUNCATED: ${t.missing} records missing at the tail (the newest record is ${t.lastSeq}, ` +
            `the chain head is at ${t.headSeq}); ${r.checked} records checked\n`,
        );
        process.exitCode = 3;
      }
      return;
    }
    case 'audit export': {
      const q = new URLSearchParams();
      q.set('format', values.format ?? 'jsonl');
      for (const k of ['kind', 'since', 'until', 'user'] as const) {
        const v = k === 'since' || k === 'until' ? dayStart(values[k]) : values[k];
        if (v) q.set(k, v);
      }
      await streamApi(target, `/api/v1/audit/export?${q}`, process.stdout);
      return;
    }
    case 'keys revoke': {
      // Every id given (`keys revoke $(keys list … | cut -f1)` revoked the first and said nothing
      // of the rest); they are revoked in order, and the first failure stops with its error.
      need(positionals[0], 'the key id');
      for (const id of positionals) {
        await callApi(target, 'DELETE', `/api/v1/keys/${encodeURIComponent(id)}`);
        process.stdout.write(`revoked ${id}\n`);
      }
      return;
    }
    default:
      throw new CliError(`unknown command: ${command} ${sub ?? ''}\n${USAGE}`);
  }
}

/** A date alone (`2027-01-01`) is ISO 8601 too: the start of that day, UTC (the API takes a date and time). */
function dayStart(iso: string | undefined): string | undefined {
  return iso && /^\d{4}-\d{2}-\d{2}$/.test(iso) ? `${iso}T00:00:00Z` : iso;
}

async function main(given: string[]): Promise<void> {
  const argv = commandFirst(given);
  const [command, sub, ...rest] = argv;
  // `aibridge serve --help`, `aibridge users --help`: the usage, whatever comes before it.
  if (argv.includes('--help') || argv.includes('-h')) {
    process.stdout.write(`${USAGE}\n`);
    return;
  }
  // Only a bridge at rest gains from a small young generation; a CLI command runs at full speed.
  if (command !== 'serve') {
    startUpDone();
    // `aibridge audit export | head`: the reader has what it wanted; stop as a Unix tool does.
    process.stdout.on('error', (err: NodeJS.ErrnoException) => {
      if (err.code === 'EPIPE') process.exit(0);
      throw err;
    });
  }
  switch (command) {
    case 'serve':
      return serve(argv.slice(1));
    case 'users':
    case 'keys':
    case 'audit':
      return admin(command, sub, rest);
    case 'login': {
      const { values } = parseArgs({
        args: argv.slice(1),
        options: { url: { type: 'string' }, name: { type: 'string' } },
        strict: true,
      });
      const env = adminClientEnv(process.env);
      const url = values.url ?? env.url;
      if (!url) throw new CliError('--url (or AIBRIDGE_URL) is required: the bridge to sign in to');
      await login({
        url,
        deviceName: values.name ?? `aibridge login on ${hostname()}`,
        file: credentialsPath(env),
        out,
      });
      return;
    }
    case 'env': {
      const { values } = parseArgs({
        args: argv.slice(1),
        options: { shell: { type: 'string' } },
        strict: true,
      });
      const shell = values.shell ?? 'posix';
      if (shell !== 'posix' && shell !== 'fish') throw new CliError('--shell must be posix or fish');
      for (const line of envExports(readCredentials(credentialsPath(adminClientEnv(process.env))), shell))
        out(line);
      return;
    }
    case 'migrate': {
      const { values } = parseArgs({
        args: argv.slice(1),
        options: { 'database-url': { type: 'string' } },
        strict: true,
      });
      // The PostgreSQL driver loads only for the commands that use it (idle RSS of `serve`).
      const { migrateCommand } = await import('./cli/store-commands');
      return migrateCommand(values['database-url'] ?? databaseUrl(process.env), out);
    }
    case 'store': {
      if (sub === 'backup') {
        const { values } = parseArgs({
          args: rest,
          options: { 'data-dir': { type: 'string' }, to: { type: 'string' } },
          strict: true,
        });
        const { backupCommand } = await import('./cli/store-commands');
        const dataDir = values['data-dir'] ?? adminClientEnv(process.env).dataDir ?? '.aibridge';
        await backupCommand(dataDir, need(values.to, '--to'), out);
        return;
      }
      if (sub !== 'copy') throw new CliError(`unknown command: store ${sub ?? ''}\n${USAGE}`);
      const { values } = parseArgs({
        args: rest,
        options: { from: { type: 'string' }, to: { type: 'string' } },
        strict: true,
      });
      const { copyStore } = await import('./cli/store-commands');
      await copyStore(need(values.from, '--from'), values.to ?? databaseUrl(process.env) ?? '', out);
      return;
    }
    case undefined:
    case 'help':
    case '--help':
    case '-h':
      process.stdout.write(`${USAGE}\n`);
      return;
    default:
      throw new CliError(`unknown command: ${command}\n${USAGE}`);
  }
}

main(process.argv.slice(2)).catch((err: unknown) => {
  if ((err as NodeJS.ErrnoException).code === 'EPIPE') process.exit(0);
  const refusal = causes(err).find(
    (e) => e instanceof ConfigError || e instanceof CliError || e instanceof DataDirLockedError,
  );
  if (refusal) {
    process.stderr.write(`aibridge: ${refusal.message}\n`);
    process.exit(2);
  }
  if ((err as { code?: string }).code?.startsWith('ERR_PARSE_ARGS')) {
    process.stderr.write(`aibridge: ${(err as Error).message}\n${USAGE}\n`);
    process.exit(2);
  }
  // What went wrong, as a sentence: a stack trace is for a bug, and only with debug logging.
  const debug = debugLogging(process.env);
  process.stderr.write(`aibridge: ${debug ? ((err as Error).stack ?? String(err)) : failureMessage(err)}\n`);
  process.exit(1);
});

/** An error and the errors it was caused by, outermost first. */
function causes(err: unknown): unknown[] {
  const out: unknown[] = [];
  for (let e = err; e !== undefined && out.length < 8; e = (e as { cause?: unknown } | null)?.cause)
    out.push(e);
  return out;
}

/** A start-up failure in words an admin can act on. */
function failureMessage(err: unknown): string {
  const e = err as NodeJS.ErrnoException & { address?: string; port?: number };
  if (e?.code === 'EADDRINUSE')
    return `${e.address ?? 'the address'}:${e.port ?? '?'} is already in use (another aibridge?): stop it, or choose another --port (AIBRIDGE_PORT)`;
  if (e?.code === 'EADDRNOTAVAIL')
    return `${e.address ?? 'the address'} is not an address of this machine: check --host (AIBRIDGE_HOST)`;
  // Resolved at start (checkListenHosts), then not at listen: the name's records changed meanwhile.
  if ((e?.code === 'ENOTFOUND' || e?.code === 'EAI_AGAIN') && e.syscall === 'getaddrinfo')
    return `${unresolved(e, (e as { hostname?: string }).hostname ?? 'the host')}: check --host (AIBRIDGE_HOST)`;
  if (e?.code === 'EACCES' && e.syscall === 'listen')
    return `not allowed to listen on ${e.address ?? ''}:${e.port ?? ''} (ports below 1024 need privileges): choose another --port`;
  return err instanceof Error ? err.message : String(err);
}
