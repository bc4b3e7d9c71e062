import pg from 'pg';
import { PostgresStore, type PostgresStoreOptions } from '../../server/store/postgres/postgres-store';
import { testPostgres } from './postgres';

/** A new database of the suite's PostgreSQL, a store open on it and a plain client beside it. */
export async function onNewDatabase(
  name: string,
  opts: Omit<PostgresStoreOptions, 'url'> = {},
): Promise<{ url: string; store: PostgresStore; sql: pg.Client }> {
  const url = await (await testPostgres()).createDatabase(name);
  const store = new PostgresStore({ url, maxConnections: 2, ...opts });
  await store.open();
  const sql = new pg.Client({ connectionString: url });
  await sql.connect();
  return { url, store, sql };
}
