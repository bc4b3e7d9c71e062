import type pg from 'pg';

/**
 * The schema, as numbered steps applied in order and recorded in `schema_migrations`. A step is
 * never edited once released: changes are new steps. They are string constants so the bundle
 * (dist/aibridge.cjs) carries them. docs/storage.md describes the tables.
 */
export const MIGRATIONS: readonly { version: number; name: string; sql: string }[] = [
  {
    version: 1,
    name: 'initial schema',
    sql: `
CREATE TABLE users (
  id text PRIMARY KEY,
  email_lower text NOT NULL UNIQUE,
  pos bigserial NOT NULL,
  doc jsonb NOT NULL
);

CREATE TABLE bridge_keys (
  id text PRIMARY KEY,
  user_id text NOT NULL,
  hash text NOT NULL UNIQUE,
  pos bigserial NOT NULL,
  doc jsonb NOT NULL
);
CREATE INDEX bridge_keys_user ON bridge_keys (user_id, pos);

-- The record is kept as the exact JSON that was hashed; the columns beside it are copies for filters.
CREATE TABLE interceptions (
  seq bigint PRIMARY KEY,
  id text NOT NULL,
  user_id text NOT NULL,
  team text,
  provider text NOT NULL,
  api text NOT NULL,
  model text,
  client text NOT NULL,
  session_id text,
  status text NOT NULL,
  started_at timestamptz NOT NULL,
  tools text[] NOT NULL DEFAULT '{}',
  prompt text,
  record text NOT NULL
);
CREATE INDEX interceptions_id ON interceptions (id);
CREATE INDEX interceptions_user_seq ON interceptions (user_id, seq);
CREATE INDEX interceptions_team_seq ON interceptions (team, seq);
CREATE INDEX interceptions_session_seq ON interceptions (session_id, seq);
CREATE INDEX interceptions_started ON interceptions (started_at);
CREATE INDEX interceptions_tools ON interceptions USING gin (tools);

-- One row: the append order's last position and hash. Writers lock it, so the chain is linked in write order.
CREATE TABLE chain_head (
  one boolean PRIMARY KEY DEFAULT true CHECK (one),
  seq bigint NOT NULL,
  hash text NOT NULL
);

-- Tool results reported by later requests, by the call they answer (the newest report wins).
CREATE TABLE tool_results (
  call_id text PRIMARY KEY,
  at text NOT NULL,
  is_error boolean NOT NULL,
  interception_id text NOT NULL
);

CREATE TABLE usage_buckets (
  hour timestamptz NOT NULL,
  user_id text NOT NULL,
  provider text NOT NULL,
  model text NOT NULL,
  client text NOT NULL,
  model_is_null boolean NOT NULL,
  user_email text NOT NULL,
  team text,
  requests bigint NOT NULL,
  input bigint NOT NULL,
  output bigint NOT NULL,
  cache_read bigint NOT NULL,
  cache_write bigint NOT NULL,
  reasoning bigint NOT NULL,
  cost_usd double precision NOT NULL,
  unpriced_requests bigint NOT NULL,
  PRIMARY KEY (hour, user_id, provider, model, client)
);
CREATE INDEX usage_buckets_user ON usage_buckets (user_id, hour);
CREATE INDEX usage_buckets_team ON usage_buckets (team, hour);

CREATE TABLE docs (
  kind text NOT NULL,
  id text NOT NULL,
  pos bigserial NOT NULL,
  doc jsonb NOT NULL,
  PRIMARY KEY (kind, id)
);

CREATE TABLE alerts (
  pos bigserial PRIMARY KEY,
  at timestamptz NOT NULL,
  user_id text,
  doc jsonb NOT NULL
);
CREATE INDEX alerts_at ON alerts (at);

CREATE TABLE access_log (
  pos bigserial PRIMARY KEY,
  at timestamptz NOT NULL,
  doc jsonb NOT NULL
);

-- Live events too large for a NOTIFY payload (8000 bytes): the notification carries the row id.
CREATE TABLE event_payloads (
  id bigserial PRIMARY KEY,
  at timestamptz NOT NULL DEFAULT now(),
  payload text NOT NULL
);
`,
  },
  {
    version: 2,
    name: 'budget ledgers shared by replicas',
    sql: `
-- Spend per budget and period, and what running requests have reserved: replicas admit against these rows.
CREATE TABLE budget_ledgers (
  budget_id text NOT NULL,
  period_start timestamptz NOT NULL,
  spent_usd double precision NOT NULL,
  alerted double precision NOT NULL,
  PRIMARY KEY (budget_id, period_start)
);

CREATE TABLE budget_reservations (
  interception_id text NOT NULL,
  budget_id text NOT NULL,
  period_start timestamptz NOT NULL,
  amount_usd double precision NOT NULL,
  at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (interception_id, budget_id, period_start)
);
CREATE INDEX budget_reservations_ledger ON budget_reservations (budget_id, period_start, at);
`,
  },
  {
    version: 3,
    name: 'settings set once by the first replica',
    sql: `
-- Values the first replica sets and every other checks its own against (a verifier of the key-hash secret; never a secret).
CREATE TABLE bridge_settings (
  name text PRIMARY KEY,
  value text NOT NULL
);
`,
  },
  {
    version: 4,
    name: "each user's last request, kept with the rollups",
    sql: `
-- One row per user who ever made a request: "last used" without scanning records or hourly rollups.
CREATE TABLE user_last_request (
  user_id text PRIMARY KEY,
  last_at timestamptz NOT NULL
);
INSERT INTO user_last_request (user_id, last_at)
  SELECT user_id, max(started_at) FROM interceptions GROUP BY user_id;
-- Users whose records retention already dropped: their newest hourly rollup is the best bound left.
INSERT INTO user_last_request (user_id, last_at)
  SELECT user_id, max(hour) FROM usage_buckets GROUP BY user_id
  ON CONFLICT (user_id) DO NOTHING;
`,
  },
  {
    version: 5,
    name: 'MCP gateway tool calls',
    sql: `
-- One row per tool call made through the MCP gateway (<bridge>/mcp): they belong to no model request.
CREATE TABLE mcp_gateway_calls (
  pos bigserial PRIMARY KEY,
  at timestamptz NOT NULL,
  user_id text NOT NULL,
  server text NOT NULL,
  name text NOT NULL,
  doc jsonb NOT NULL
);
CREATE INDEX mcp_gateway_calls_at ON mcp_gateway_calls (at);
CREATE INDEX mcp_gateway_calls_user ON mcp_gateway_calls (user_id, at);
`,
  },
  {
    version: 6,
    name: 'user-billed cost apart in the rollups',
    sql: `
-- Requests sent with a user's own provider credential (billedTo "user", docs/routing.md): their cost
-- is the user's, kept out of cost_usd (which budgets and spend reports sum) and summed here instead.
ALTER TABLE usage_buckets
  ADD COLUMN user_billed_cost_usd double precision NOT NULL DEFAULT 0,
  ADD COLUMN user_billed_requests bigint NOT NULL DEFAULT 0;
`,
  },
  {
    version: 7,
    name: 'who owns each stored response',
    sql: `
-- The provider's id of a stored answer (OpenAI Responses' resp_...), copied from the record: a member
-- may read, delete or continue only their own (docs/security.md). Records from before have none; the
-- index holds only those that do, so adding it to a large table reads it once and writes little.
ALTER TABLE interceptions ADD COLUMN response_id text;
CREATE INDEX interceptions_response ON interceptions (response_id) WHERE response_id IS NOT NULL;
`,
  },
  {
    version: 8,
    name: 'tool names kept in the form the tool filter compares',
    sql: `
-- The tool filter ignores letter case (docs/audit.md): new rows keep each name's search form, folded
-- by the bridge (toolForm in server/store/search-text.ts), in the column interceptions_tools indexes.
-- Rows from before are folded here, once: only those with an upper-case ASCII or non-ASCII letter
-- change. ASCII exactly as the bridge folds it (under the C collation, whatever the database's);
-- other names NFKC-normalised and lowered under the database's collation (a C-collated database
-- lowers only ASCII: such a name from before matches only in its own case there).
UPDATE interceptions SET tools = ARRAY(
  SELECT DISTINCT CASE
    WHEN t ~ '^[[:ascii:]]*$' THEN lower(t COLLATE "C")
    WHEN current_setting('server_encoding') = 'UTF8' THEN lower(normalize(t, NFKC))
    ELSE lower(t)
  END
  FROM unnest(tools) AS t)
WHERE array_to_string(tools, '') ~ '[A-Z]|[^[:ascii:]]';
`,
  },
  {
    version: 9,
    name: 'who owns each stored output item',
    sql: `
-- The ids of a stored answer's output items (msg_..., rs_..., fc_...), copied from the record: a
-- member may name only their own in a request's input (item_reference; docs/security.md). Only
-- records of stored Responses answers have them, and only those are indexed.
ALTER TABLE interceptions ADD COLUMN response_items text[];
CREATE INDEX interceptions_response_items ON interceptions USING gin (response_items)
  WHERE response_items IS NOT NULL;
`,
  },
  {
    version: 10,
    name: 'rows an older bridge wrote are marked for repair',
    sql: `
-- A row the bridge writes says stale = false; the default marks the rows an older replica writes
-- during a rolling upgrade (or after a downgrade), which fill the columns of steps 8 and 9 as their
-- own version did: a current replica writes those columns again from the record (stale-rows.ts).
-- Rows from before are as steps 8 and 9 left them, except tool names with an upper-case ASCII
-- letter, which no bridge since step 8 writes: an older replica wrote them after step 8 ran.
ALTER TABLE interceptions ADD COLUMN stale boolean;
ALTER TABLE interceptions ALTER COLUMN stale SET DEFAULT true;
UPDATE interceptions SET stale = true WHERE array_to_string(tools, '') ~ '[A-Z]';
CREATE INDEX interceptions_stale ON interceptions (seq) WHERE stale;
`,
  },
];

export const LATEST_MIGRATION = MIGRATIONS.at(-1)!.version;

/** Any number, as long as every replica uses the same: the session lock that serialises migrating. */
const MIGRATION_LOCK = 7_410_001;

/**
 * Applies the steps not yet applied, each in its own transaction. Replicas starting together queue
 * on an advisory lock, so exactly one migrates and the others find the work done.
 */
export async function migrate(client: pg.ClientBase): Promise<{ applied: number[] }> {
  const applied: number[] = [];
  await client.query('SELECT pg_advisory_lock($1)', [MIGRATION_LOCK]);
  try {
    await client.query(
      `CREATE TABLE IF NOT EXISTS schema_migrations (
         version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())`,
    );
    const done = new Set(
      (await client.query<{ version: number }>('SELECT version FROM schema_migrations')).rows.map(
        (r) => r.version,
      ),
    );
    for (const m of MIGRATIONS) {
      if (done.has(m.version)) continue;
      await client.query('BEGIN');
      try {
        await client.query(m.sql);
        await client.query('INSERT INTO schema_migrations (version, name) VALUES ($1, $2)', [
          m.version,
          m.name,
        ]);
        await client.query('COMMIT');
      } catch (err) {
        await client.query('ROLLBACK');
        throw new Error(`migration ${m.version} (${m.name}) failed: ${(err as Error).message}`, {
          cause: err,
        });
      }
      applied.push(m.version);
    }
  } finally {
    await client.query('SELECT pg_advisory_unlock($1)', [MIGRATION_LOCK]);
  }
  return { applied };
}

/** How many steps the database has, for health checks. */
export async function appliedMigrations(client: pg.Pool | pg.ClientBase): Promise<number> {
  const r = await client.query<{ n: string }>(
    `SELECT count(*) AS n FROM schema_migrations WHERE version <= $1`,
    [LATEST_MIGRATION],
  );
  return Number(r.rows[0]?.n ?? 0);
}
