import { execFile, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import pg from 'pg';
import { freePort } from './loopback';

const run = promisify(execFile);

/** A throwaway PostgreSQL server: trust auth on 127.0.0.1, data and socket in a temp dir. */
export interface TestPostgres {
  /** The server's admin URL (database `postgres`). */
  url: string;
  /** Creates an empty database and returns its URL. */
  createDatabase(prefix?: string): Promise<string>;
}

/** The newest installed server binaries (Debian keeps them outside PATH). */
function binDir(): string {
  const root = '/usr/lib/postgresql';
  const versions = fs.existsSync(root)
    ? fs
        .readdirSync(root)
        .filter((v) => fs.existsSync(path.join(root, v, 'bin', 'initdb')))
        .sort((a, b) => Number(b) - Number(a))
    : [];
  if (versions[0] === undefined) {
    throw new Error(
      'PostgreSQL server binaries not found under /usr/lib/postgresql (run scripts/test-setup.sh)',
    );
  }
  return path.join(root, versions[0], 'bin');
}

/** initdb refuses to run as root: as root, run the server binaries as the `postgres` user. */
function asServerUser(cmd: string, args: string[]): [string, string[]] {
  return process.getuid?.() === 0 ? ['runuser', ['-u', 'postgres', '--', cmd, ...args]] : [cmd, args];
}

/**
 * Starts a server and stops it when the process exits. `durable`: fsync on, as in production (for
 * measurements); tests leave it off, durability is not what they check.
 */
export async function startPostgres(opts: { durable?: boolean } = {}): Promise<TestPostgres> {
  const bin = binDir();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'aibridge-pg-'));
  if (process.getuid?.() === 0) spawnSync('chown', ['-R', 'postgres', dir]);
  const data = path.join(dir, 'data');
  await run(
    ...asServerUser(path.join(bin, 'initdb'), [
      '-D',
      data,
      '-U',
      'postgres',
      '--auth=trust',
      '--no-sync',
      '-E',
      'UTF8',
      '--locale=C',
    ]),
  );
  const port = await freePort();
  const fast = opts.durable ? '' : ' -c fsync=off -c synchronous_commit=off -c full_page_writes=off';
  const serverOpts = `-p ${port} -k ${dir} -h 127.0.0.1 -c max_connections=200${fast}`;
  await run(
    ...asServerUser(path.join(bin, 'pg_ctl'), [
      '-D',
      data,
      '-o',
      serverOpts,
      '-l',
      path.join(dir, 'log'),
      '-w',
      '-t',
      '60',
      'start',
    ]),
  );
  // Stopped synchronously as the test process exits (mocha exits with process.exit).
  process.once('exit', () => {
    spawnSync(...asServerUser(path.join(bin, 'pg_ctl'), ['-D', data, '-m', 'immediate', '-w', 'stop']));
    fs.rmSync(dir, { recursive: true, force: true });
  });
  const url = `postgres://postgres@127.0.0.1:${port}/postgres`;
  let n = 0;
  return {
    url,
    async createDatabase(prefix = 'aibridge') {
      const name = `${prefix.replace(/\W/g, '_')}_${process.pid}_${++n}`;
      const client = new pg.Client({ connectionString: url });
      await client.connect();
      try {
        await client.query(`CREATE DATABASE ${name}`);
      } finally {
        await client.end();
      }
      return `postgres://postgres@127.0.0.1:${port}/${name}`;
    },
  };
}

let server: Promise<TestPostgres> | undefined;

/** One server per test process, started on first use; each suite takes its own database. */
export function testPostgres(): Promise<TestPostgres> {
  server ??= startPostgres();
  return server;
}
