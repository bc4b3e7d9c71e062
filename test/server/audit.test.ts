import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { crc32 } from 'node:zlib';
import Anthropic from '@anthropic-ai/sdk';
import { type ChainReport, chainHash, GENESIS, verifyChain } from '../../server/core/chain';
import { EmbeddedStore } from '../../server/store/embedded/embedded-store';
import type { NewInterception } from '../../server/store/types';
import type { Interception, Page } from '../../shared/interception';
import { AnthropicMock } from '../helpers/anthropic-mock';
import { startBridge, type TestBridge, tempDir } from '../helpers/bridge';
import { eventually } from '../helpers/eventually';
import { testPostgres } from '../helpers/postgres';

const run = promisify(execFile);

function send(
  tb: TestBridge,
  key: string,
  prompt: string,
  headers: Record<string, string> = {},
): Promise<Response> {
  return fetch(`${tb.url}/anthropic/v1/messages`, {
    method: 'POST',
    headers: {
      'x-api-key': key,
      'content-type': 'application/json',
      'anthropic-version': '2023-06-01',
      ...headers,
    },
    body: JSON.stringify({
      model: 'claude-sonnet-4-5',
      max_tokens: 16,
      messages: [{ role: 'user', content: prompt }],
    }),
  }).then(async (r) => {
    await r.text();
    return r;
  });
}

/** Rewrites one journal line: `<crc32> <json>`, with a checksum that matches, as an editor with disk access would. */
function line(json: string): string {
  return `${crc32(Buffer.from(json)).toString(16).padStart(8, '0')} ${json}`;
}

async function journalLines(dir: string): Promise<{ file: string; lines: string[] }> {
  const segDir = path.join(dir, 'interceptions');
  const seg = (await fs.readdir(segDir)).filter((f) => f.endsWith('.jsonl')).sort()[0]!;
  const file = path.join(segDir, seg);
  return { file, lines: (await fs.readFile(file, 'utf8')).trimEnd().split('\n') };
}

/** `aibridge audit verify` against a running bridge, as an admin would run it. */
function verifyCli(tb: TestBridge, ...flags: string[]): Promise<{ stdout: string; stderr: string }> {
  return run(process.execPath, [
    'dist/aibridge.cjs',
    'audit',
    'verify',
    '--url',
    tb.url,
    '--admin-key',
    tb.adminKey,
    ...flags,
  ]);
}

describe('the audit trail', function () {
  this.timeout(120_000);
  let mock: AnthropicMock;
  before(async () => {
    mock = await new AnthropicMock().start();
  });
  after(() => mock.stop());

  describe('search', () => {
    let tb: TestBridge;
    let alice: { key: string; user: { id: string } };
    let bob: { key: string; user: { id: string } };
    before(async () => {
      tb = await startBridge(mock.url);
      alice = await tb.addUser('alice@example.com', { team: 'red' });
      bob = await tb.addUser('bob@example.com', { team: 'blue' });
      await send(tb, alice.key, 'rotate the database credentials', { 'x-claude-code-session-id': 'sess-a' });
      mock.next({ kind: 'tool', name: 'Bash', input: { command: 'ls -la' } });
      await send(tb, alice.key, 'list the files', { 'x-claude-code-session-id': 'sess-a' });
      mock.next({ kind: 'error', status: 400, type: 'invalid_request_error', message: 'bad' });
      await send(tb, bob.key, 'something that fails', { 'x-claude-code-session-id': 'sess-b' });
      mock.next({ kind: 'tool', name: 'mcp__github__create_issue', input: { title: 'x' } });
      await send(tb, bob.key, 'file an issue', { 'x-claude-code-session-id': 'sess-b' });
      await tb.interceptions(4);
    });
    after(() => tb.close());

    const list = async (q: string, key = tb.adminKey): Promise<Interception[]> =>
      (await tb.api<Page<Interception>>('GET', `/api/v1/interceptions?${q}`, key)).body.items;

    it("a member's records come without the chain's links, which tie them to other users' records", async () => {
      const mine = await list('limit=10', alice.key);
      assert.equal(mine.length, 2);
      for (const r of mine) assert.ok(!('hash' in r) && !('prevHash' in r), JSON.stringify(Object.keys(r)));
      const one = await tb.api<Interception>('GET', `/api/v1/interceptions/${mine[0]!.id}`, alice.key);
      assert.ok(!('prevHash' in one.body));
      const exported = await fetch(`${tb.url}/api/v1/audit/export?format=jsonl`, {
        headers: { authorization: `Bearer ${alice.key}` },
      });
      assert.doesNotMatch(await exported.text(), /"prevHash"/);
      // An admin, who verifies the chain, sees them.
      assert.ok((await list('limit=10')).every((r) => typeof r.prevHash === 'string'));
    });

    it('filters by team, session, tool, status and prompt text', async () => {
      assert.deepEqual(
        (await list('team=red')).map((r) => r.userEmail),
        ['alice@example.com', 'alice@example.com'],
      );
      assert.equal((await list('session=sess-b')).length, 2);
      assert.deepEqual(
        (await list('tool=Bash')).map((r) => r.prompt),
        ['list the files'],
      );
      assert.deepEqual(
        (await list('status=error')).map((r) => r.prompt),
        ['something that fails'],
      );
      assert.deepEqual(
        (await list('q=DATABASE')).map((r) => r.prompt),
        ['rotate the database credentials'],
      );
      assert.deepEqual(await list('tool=nope'), []);
      // Letter case aside: another agent's `bash` or a typed `BASH` finds Claude Code's `Bash`.
      for (const tool of ['bash', 'BASH'])
        assert.deepEqual(
          (await list(`tool=${tool}`)).map((r) => r.prompt),
          ['list the files'],
          tool,
        );
      assert.deepEqual(await list('tool=bas'), []);
      assert.deepEqual(
        (await list('q=issue', bob.key)).map((r) => r.prompt),
        ['file an issue'],
      );
      assert.deepEqual(await list('q=files', bob.key), [], 'members search only their own');
    });

    it('gives one record by id, to its owner or an admin only', async () => {
      const [rec] = await list('tool=Bash');
      const mine = await tb.api<Interception>('GET', `/api/v1/interceptions/${rec!.id}`, alice.key);
      assert.equal(mine.status, 200);
      assert.equal(mine.body.toolCalls[0]!.name, 'Bash');
      assert.equal((await tb.api('GET', `/api/v1/interceptions/${rec!.id}`, tb.adminKey)).status, 200);
      assert.equal((await tb.api('GET', `/api/v1/interceptions/${rec!.id}`, bob.key)).status, 404);
      assert.equal((await tb.api('GET', '/api/v1/interceptions/int_nope', tb.adminKey)).status, 404);
    });

    it('groups interceptions by agent session, and lists tool calls across sessions', async () => {
      const sessions = await tb.api<{
        items: { sessionId: string; requests: number; toolCalls: number; userEmail: string }[];
      }>('GET', '/api/v1/sessions', tb.adminKey);
      const byId = Object.fromEntries(sessions.body.items.map((s) => [s.sessionId, s]));
      assert.equal(byId['sess-a']!.requests, 2);
      assert.equal(byId['sess-a']!.toolCalls, 1);
      assert.equal(byId['sess-b']!.userEmail, 'bob@example.com');
      const own = await tb.api<{ items: { sessionId: string }[] }>('GET', '/api/v1/sessions', bob.key);
      assert.deepEqual(
        own.body.items.map((s) => s.sessionId),
        ['sess-b'],
      );

      const calls = await tb.api<{ items: { name: string; server: string | null; sessionId: string }[] }>(
        'GET',
        '/api/v1/tool-calls?server=github',
        tb.adminKey,
      );
      assert.deepEqual(
        calls.body.items.map((c) => [c.name, c.server, c.sessionId]),
        [['mcp__github__create_issue', 'github', 'sess-b']],
      );
      const shell = await tb.api<{ items: { name: string; sessionId: string }[] }>(
        'GET',
        '/api/v1/tool-calls?tool=bash',
        tb.adminKey,
      );
      assert.deepEqual(
        shell.body.items.map((c) => [c.name, c.sessionId]),
        [['Bash', 'sess-a']],
      );
      const all = await tb.api<{ items: unknown[] }>('GET', '/api/v1/tool-calls', tb.adminKey);
      assert.equal(all.body.items.length, 2);
      // Text in the arguments, as `q` finds text in a prompt: the command Claude Code ran.
      const ran = async (query: string, key = tb.adminKey): Promise<string[]> =>
        (
          await tb.api<{ items: { name: string; input: unknown }[] }>(
            'GET',
            `/api/v1/tool-calls?${query}`,
            key,
          )
        ).body.items.map((c) => `${c.name} ${JSON.stringify(c.input)}`);
      assert.deepEqual(await ran('q=LS%20-LA'), ['Bash {"command":"ls -la"}']);
      assert.deepEqual(await ran('q=ls&tool=bash'), ['Bash {"command":"ls -la"}']);
      assert.deepEqual(await ran('q=ls&server=github'), []);
      assert.deepEqual(await ran('q=command'), [], 'keys are not searched');
      assert.deepEqual(await ran('q=ls', bob.key), [], 'a member searches only their own calls');
    });

    it('records every admin read of other users’ records, and not members’ own reads', async () => {
      type Entry = {
        route: string;
        subjectUserId: string | null;
        adminEmail: string;
        query: Record<string, string>;
      };
      const log = async (): Promise<Entry[]> =>
        (await tb.api<{ items: Entry[] }>('GET', '/api/v1/audit/access-log?limit=1000', tb.adminKey)).body
          .items;
      await list('user=alice@example.com&status=ok');
      await list('q=x', alice.key);
      // Entries are listed once durable (the store's flush window). A positive signal that the member's
      // read was processed: an admin read made after it, which is logged; entries are kept in order.
      await list('user=alice@example.com&status=error');
      const isMine = (e: Entry) => e.query.user === 'alice@example.com' && e.query.status === 'ok';
      const isLater = (e: Entry) => e.query.user === 'alice@example.com' && e.query.status === 'error';
      const entries = await eventually(
        async () => {
          const all = await log();
          return all.some(isMine) && all.some(isLater) ? all : undefined;
        },
        { what: "the admin's reads in the access log" },
      );
      const mine = entries.filter(isMine);
      assert.equal(mine.length, 1);
      assert.equal(mine[0]!.route, 'GET /api/v1/interceptions');
      assert.equal(mine[0]!.subjectUserId, alice.user.id);
      assert.ok(
        entries.every((e) => e.adminEmail !== 'alice@example.com'),
        'a member reading their own is not logged',
      );
      assert.equal((await tb.api('GET', '/api/v1/audit/access-log', alice.key)).status, 403);
    });
  });

  describe('incident search on PostgreSQL', () => {
    it('finds a prompt whatever its case or Unicode form, as the embedded store does', async () => {
      const tb = await startBridge(mock.url, {
        AIBRIDGE_DATABASE_URL: await (await testPostgres()).createDatabase('incident'),
      });
      try {
        const dev = await tb.addUser('unicode@example.com');
        const client = new Anthropic({ baseURL: `${tb.url}/anthropic`, apiKey: dev.key, maxRetries: 0 });
        // A member writes what reads as plain words to a person: capitals with accents, fullwidth
        // letters, an accent typed as its own combining character.
        for (const content of [
          'RÉSUMÉ of the Été launch',
          'leak the ＣＯＮＦＩＤＥＮＴＩＡＬ plan',
          'cafe\u0301 order',
        ]) {
          await client.messages.create({
            model: 'claude-sonnet-4-6',
            max_tokens: 8,
            messages: [{ role: 'user', content }],
          });
        }
        await tb.interceptions(3);
        const found = async (q: string): Promise<(string | null)[]> =>
          (
            await tb.api<Page<Interception>>(
              'GET',
              `/api/v1/interceptions?q=${encodeURIComponent(q)}`,
              tb.adminKey,
            )
          ).body.items.map((r) => r.prompt);
        assert.deepEqual(await found('résumé'), ['RÉSUMÉ of the Été launch']);
        assert.deepEqual(await found('confidential plan'), ['leak the ＣＯＮＦＩＤＥＮＴＩＡＬ plan']);
        assert.deepEqual(await found('café'), ['cafe\u0301 order']);
      } finally {
        await tb.close();
      }
    });
  });

  describe('tamper evidence', () => {
    async function filled(): Promise<{ dir: string; report: ChainReport }> {
      const dir = await tempDir('aibridge-chain-');
      const tb = await startBridge(mock.url, {}, dir);
      const dev = await tb.addUser('chain@example.com');
      for (let i = 0; i < 6; i++) await send(tb, dev.key, `step ${i}`);
      await tb.interceptions(6);
      const report = (await tb.api<ChainReport>('GET', '/api/v1/audit/verify', tb.adminKey)).body;
      await tb.close();
      return { dir, report };
    }

    async function verifyAfter(dir: string, change: (lines: string[]) => string[]): Promise<ChainReport> {
      const { file, lines } = await journalLines(dir);
      await fs.writeFile(file, `${change(lines).join('\n')}\n`);
      const tb = await startBridge(mock.url, {}, dir);
      try {
        return (await tb.api<ChainReport>('GET', '/api/v1/audit/verify', tb.adminKey)).body;
      } finally {
        await tb.close();
      }
    }

    it('an intact chain verifies', async () => {
      const { report } = await filled();
      assert.deepEqual([report.ok, report.checked, report.firstBreak], [true, 6, null]);
    });

    it('names the first broken link after an edit, a deletion or a reordering', async () => {
      const edited = await verifyAfter((await filled()).dir, (lines) =>
        lines.map((l, i) => (i === 2 ? line(l.slice(9).replace('"input":25', '"input":2')) : l)),
      );
      assert.equal(edited.ok, false);
      assert.equal(edited.firstBreak!.seq, 3);
      assert.match(edited.firstBreak!.reason, /edited/);

      const deleted = await verifyAfter((await filled()).dir, (lines) => lines.filter((_, i) => i !== 3));
      assert.equal(deleted.firstBreak!.seq, 5);
      assert.match(deleted.firstBreak!.reason, /deleted or moved/);

      const reordered = await verifyAfter((await filled()).dir, (lines) => [
        lines[0]!,
        lines[2]!,
        lines[1]!,
        ...lines.slice(3),
      ]);
      assert.equal(reordered.ok, false);
      assert.equal(reordered.firstBreak!.seq, 3);
    });

    /** A journal line with its record's hash fields removed (and a checksum that matches again). */
    const stripped = (l: string, edit: (json: string) => string = (j) => j): string => {
      const { hash: _h, prevHash: _p, ...rest } = JSON.parse(edit(l.slice(9))) as Record<string, unknown>;
      return line(JSON.stringify(rest));
    };

    it('a record whose hash fields were removed after chained records is a break, not a pre-chain record', async () => {
      const edited = await verifyAfter((await filled()).dir, (lines) =>
        lines.map((l, i) => (i === 2 ? stripped(l, (j) => j.replace('"input":25', '"input":2')) : l)),
      );
      assert.equal(edited.ok, false);
      assert.equal(edited.firstBreak?.seq, 3);
      assert.match(edited.firstBreak!.reason, /hash fields were removed/);

      // Delete record 4 and strip the one after it, so nothing points back to the gap.
      const deleted = await verifyAfter((await filled()).dir, (lines) =>
        lines.filter((_, i) => i !== 3).map((l, i) => (i === 3 ? stripped(l) : l)),
      );
      assert.equal(deleted.ok, false);
      assert.equal(deleted.firstBreak?.seq, 5);

      // The first records of a chain from the start, their hash fields taken off: the break is at
      // the first of them, not one record later as "deleted".
      for (const n of [1, 2]) {
        const front = await verifyAfter((await filled()).dir, (lines) =>
          lines.map((l, i) => (i < n ? stripped(l, (j) => j.replace('"input":25', '"input":2')) : l)),
        );
        assert.equal(front.ok, false);
        assert.equal(front.firstBreak?.seq, 1, `${n} stripped`);
        assert.match(front.firstBreak!.reason, /hash fields were removed/);
      }
    });

    it('a record without hash fields put in front of a chain that starts at the first record is a break', async () => {
      // A copy of a real record, made someone else's and unchained: before the fix it passed as
      // written before the chain existed, and showed in searches and exports as theirs.
      const forge = (l: string, seq: number): string =>
        stripped(l, (j) =>
          j
            .replace(/"id":"[^"]+"/, `"id":"int_forged-${seq}"`)
            .replace(/"seq":\d+/, `"seq":${seq}`)
            .replace(/"prompt":"[^"]*"/, '"prompt":"FORGED: drop the production database"'),
        );
      for (const seq of [0, 1]) {
        const forged = await verifyAfter((await filled()).dir, (lines) => [forge(lines[0]!, seq), ...lines]);
        assert.equal(forged.ok, false, `seq ${seq}`);
        assert.equal(forged.firstBreak?.id, `int_forged-${seq}`);
        assert.match(
          forged.firstBreak!.reason,
          /has no hash or link, and the chain begins at the first record/,
        );
      }
    });

    it('records written before the chain existed verify, before and after the chain begins behind them', async () => {
      // A data dir from before the chain: no hash fields, no head, no anchor.
      const { dir } = await filled();
      const { file, lines } = await journalLines(dir);
      await fs.writeFile(file, `${lines.map((l) => stripped(l)).join('\n')}\n`);
      const db = JSON.parse(await fs.readFile(path.join(dir, 'db.json'), 'utf8')) as {
        chainHead?: unknown;
        settings?: Record<string, unknown>;
      };
      delete db.chainHead;
      delete db.settings?.chain_anchor;
      await fs.writeFile(path.join(dir, 'db.json'), JSON.stringify(db));
      await fs.rm(path.join(dir, 'live.json'), { force: true });
      const tb = await startBridge(mock.url, {}, dir);
      try {
        const before = (await tb.api<ChainReport>('GET', '/api/v1/audit/verify', tb.adminKey)).body;
        assert.equal(before.ok, true, JSON.stringify(before));
        assert.equal(before.checked, 6);
        const dev = await tb.addUser('after-chain@example.com');
        for (let i = 0; i < 2; i++) await send(tb, dev.key, `chained ${i}`);
        await tb.interceptions(8);
        const after = (await tb.api<ChainReport>('GET', '/api/v1/audit/verify', tb.adminKey)).body;
        assert.equal(after.ok, true, JSON.stringify(after));
        assert.equal(after.checked, 8);
      } finally {
        await tb.close();
      }
      // One more unchained record put in front of them is a break.
      const { lines: now } = await journalLines(dir);
      const forged = await verifyAfter(dir, () => [
        stripped(now[0]!, (j) =>
          j.replace(/"id":"[^"]+"/, '"id":"int_forged-0"').replace(/"seq":\d+/, '"seq":0'),
        ),
        ...now,
      ]);
      assert.equal(forged.ok, false);
      assert.equal(forged.firstBreak?.id, 'int_forged-0');
      assert.match(forged.firstBreak!.reason, /the chain begins at record 7: only the 6 records before it/);
    });

    it('records deleted from the start of the chain are a break too (nothing was pruned), as is an edited first record dropped for its checksum', async () => {
      const first = await verifyAfter((await filled()).dir, (lines) => lines.slice(2));
      assert.equal(first.ok, false);
      assert.equal(first.firstBreak?.seq, 3);
      assert.match(
        first.firstBreak!.reason,
        /does not start the kept chain: records after 0 and before it were deleted/,
      );
      // A first line edited without fixing its checksum is skipped at start-up: the same break.
      const torn = await verifyAfter((await filled()).dir, (lines) =>
        lines.map((l, i) => (i === 0 ? l.replace('"input":25', '"input":2') : l)),
      );
      assert.equal(torn.ok, false);
      assert.equal(torn.firstBreak?.seq, 2);
    });

    it('an anchor moved past records still there hides no edit among them', async () => {
      const { dir } = await filled();
      const { file, lines } = await journalLines(dir);
      const sixth = JSON.parse(lines[5]!.slice(9)) as { prevHash: string };
      await fs.writeFile(
        file,
        `${lines.map((l, i) => (i === 2 ? line(l.slice(9).replace('"input":25', '"input":2')) : l)).join('\n')}\n`,
      );
      // As if retention had pruned up to record 5: the stored anchor moved, the records left.
      const dbFile = path.join(dir, 'db.json');
      const db = JSON.parse(await fs.readFile(dbFile, 'utf8')) as { settings: Record<string, string> };
      db.settings.chain_anchor = JSON.stringify({ afterSeq: 5, hash: sixth.prevHash });
      await fs.writeFile(dbFile, JSON.stringify(db));
      const tb = await startBridge(mock.url, {}, dir);
      try {
        const report = (await tb.api<ChainReport>('GET', '/api/v1/audit/verify', tb.adminKey)).body;
        assert.equal(report.ok, false);
        assert.equal(report.firstBreak?.seq, 3);
        assert.match(report.firstBreak!.reason, /edited/);
      } finally {
        await tb.close();
      }
    });

    it('records cut off the end of the journal are reported missing at the tail, and stay a break', async () => {
      const { dir } = await filled();
      const truncated = await verifyAfter(dir, (lines) => lines.slice(0, 4));
      assert.equal(truncated.ok, false);
      assert.equal(truncated.firstBreak, null);
      assert.deepEqual(truncated.truncated, { missing: 2, lastSeq: 4, headSeq: 6 });
      assert.equal((await journalLines(dir)).lines.length, 4, 'the journal still lacks the two records');
      // A new record does not paper over the cut: it links to the head, not to record 4.
      const tb = await startBridge(mock.url, {}, dir);
      try {
        const dev = await tb.addUser('after-cut@example.com');
        await send(tb, dev.key, 'after the cut');
        await tb.interceptions(5);
        const after = (await tb.api<ChainReport>('GET', '/api/v1/audit/verify', tb.adminKey)).body;
        assert.equal(after.ok, false);
        assert.equal(after.firstBreak?.seq, 7);
        assert.match(after.firstBreak!.reason, /2 missing before it/);
        await assert.rejects(verifyCli(tb), (err: { code: number; stdout: string }) => {
          assert.equal(err.code, 3);
          assert.match(err.stdout, /BROKEN at record 7/);
          return true;
        });
      } finally {
        await tb.close();
      }
    });

    it('a newest record rewritten with a matching hash is caught against the chain head', async () => {
      const forged = await verifyAfter((await filled()).dir, (lines) =>
        lines.map((l, i) => {
          if (i !== lines.length - 1) return l;
          const rec = JSON.parse(l.slice(9)) as Interception;
          const edited = { ...rec, usage: { ...rec.usage, output: 1 } };
          return line(JSON.stringify({ ...edited, hash: chainHash(edited.prevHash!, edited) }));
        }),
      );
      assert.equal(forged.ok, false);
      assert.equal(forged.firstBreak?.seq, 6);
      assert.match(forged.firstBreak!.reason, /chain head/);
    });

    /**
     * Someone with the whole data dir rewrites the journal's tail and the chain head the store
     * keeps to match: the store's own checks pass, and only a head kept outside the bridge shows it.
     */
    async function forgedTail(dir: string, change: (lines: string[]) => string[]): Promise<void> {
      const { file, lines } = await journalLines(dir);
      const forged = change(lines);
      await fs.writeFile(file, `${forged.join('\n')}\n`);
      const last = JSON.parse(forged.at(-1)!.slice(9)) as Interception;
      const head = { seq: last.seq, hash: last.hash! };
      await fs.writeFile(path.join(dir, 'live.json'), JSON.stringify({ chainHead: head }));
      const db = JSON.parse(await fs.readFile(path.join(dir, 'db.json'), 'utf8')) as Record<string, unknown>;
      await fs.writeFile(path.join(dir, 'db.json'), JSON.stringify({ ...db, chainHead: head }));
    }

    it("a tail forged together with the store's chain head is caught against a head kept outside the bridge", async () => {
      const { dir, report } = await filled();
      // What an admin keeps outside (a ticket, a log shipper): the head verify reported, as the CLI prints it.
      const kept = `${report.head!.seq}:${report.head!.hash}`;
      await forgedTail(dir, (lines) =>
        lines.map((l, i) => {
          if (i !== lines.length - 1) return l;
          const rec = JSON.parse(l.slice(9)) as Interception;
          const edited = { ...rec, usage: { ...rec.usage, output: 1 } };
          return line(JSON.stringify({ ...edited, hash: chainHash(edited.prevHash!, edited) }));
        }),
      );
      const tb = await startBridge(mock.url, {}, dir);
      try {
        const alone = (await tb.api<ChainReport>('GET', '/api/v1/audit/verify', tb.adminKey)).body;
        assert.equal(alone.ok, true, 'the store alone cannot tell');
        const against = await tb.api<ChainReport>('GET', `/api/v1/audit/verify?kept=${kept}`, tb.adminKey);
        assert.equal(against.status, 200);
        assert.equal(against.body.ok, false);
        assert.equal(against.body.firstBreak?.seq, 6);
        assert.match(against.body.firstBreak!.reason, /kept outside the bridge/);
        await assert.rejects(verifyCli(tb, '--kept', kept), (err: { code: number; stdout: string }) => {
          assert.equal(err.code, 3);
          assert.match(err.stdout, /BROKEN at record 6 .*kept outside the bridge/);
          return true;
        });
        const bad = await tb.api('GET', '/api/v1/audit/verify?kept=6', tb.adminKey);
        assert.equal(bad.status, 400);
      } finally {
        await tb.close();
      }
    });

    it('a record deleted and every later link recomputed, head and all, is a break at the gap in the numbering', async () => {
      const { dir } = await filled();
      await forgedTail(dir, (lines) => {
        let prev = '';
        return lines
          .filter((_, i) => i !== 2)
          .map((l, i) => {
            const rec = JSON.parse(l.slice(9)) as Interception;
            if (i < 2) {
              prev = rec.hash!;
              return l;
            }
            const relinked = { ...rec, prevHash: prev };
            delete (relinked as { hash?: string }).hash;
            prev = chainHash(prev, relinked);
            return line(JSON.stringify({ ...relinked, hash: prev }));
          });
      });
      const tb = await startBridge(mock.url, {}, dir);
      try {
        const report = (await tb.api<ChainReport>('GET', '/api/v1/audit/verify', tb.adminKey)).body;
        assert.equal(report.ok, false);
        assert.equal(report.firstBreak?.seq, 4);
        assert.match(report.firstBreak!.reason, /follows record 2 with 1 missing before it/);
      } finally {
        await tb.close();
      }
    });

    it("records cut off the end together with the store's chain head are missing against a head kept outside", async () => {
      const { dir, report } = await filled();
      const kept = `${report.head!.seq}:${report.head!.hash}`;
      await forgedTail(dir, (lines) => lines.slice(0, 4));
      const tb = await startBridge(mock.url, {}, dir);
      try {
        assert.equal((await tb.api<ChainReport>('GET', '/api/v1/audit/verify', tb.adminKey)).body.ok, true);
        const against = (await tb.api<ChainReport>('GET', `/api/v1/audit/verify?kept=${kept}`, tb.adminKey))
          .body;
        assert.equal(against.ok, false);
        assert.deepEqual(against.truncated, { missing: 2, lastSeq: 4, headSeq: 6 });
        assert.deepEqual(against.kept, { seq: 6, hash: report.head!.hash, checked: false });
        await assert.rejects(verifyCli(tb, '--kept', kept), (err: { code: number; stdout: string }) => {
          assert.equal(err.code, 3);
          assert.match(err.stdout, /TRUNCATED: 2 records missing at the tail/);
          return true;
        });
      } finally {
        await tb.close();
      }
    });

    it("prints the newest record checked as the head to keep when the store's own head trails it (after a crash)", async () => {
      const { dir, report } = await filled();
      // What a crash leaves: records durable in the journal after the head was last written.
      const { lines } = await journalLines(dir);
      const fourth = JSON.parse(lines[3]!.slice(9)) as Interception;
      const trailing = { seq: fourth.seq, hash: fourth.hash! };
      await fs.writeFile(path.join(dir, 'live.json'), JSON.stringify({ chainHead: trailing }));
      const db = JSON.parse(await fs.readFile(path.join(dir, 'db.json'), 'utf8')) as Record<string, unknown>;
      await fs.writeFile(path.join(dir, 'db.json'), JSON.stringify({ ...db, chainHead: trailing }));
      const tb = await startBridge(mock.url, {}, dir);
      try {
        const api = (await tb.api<ChainReport>('GET', '/api/v1/audit/verify', tb.adminKey)).body;
        assert.equal(api.ok, true);
        assert.deepEqual(api.head, trailing);
        assert.deepEqual(api.newest, report.head);
        const out = await verifyCli(tb);
        assert.equal(out.stdout, `ok: 6 records, chain intact\nhead: 6:${report.head!.hash}\n`);
      } finally {
        await tb.close();
      }
      // Records 5 and 6 cut off after that head was kept outside: a truncation against it.
      await forgedTail(dir, (l) => l.slice(0, 4));
      const again = await startBridge(mock.url, {}, dir);
      try {
        const against = (
          await again.api<ChainReport>(
            'GET',
            `/api/v1/audit/verify?kept=6:${report.head!.hash}`,
            again.adminKey,
          )
        ).body;
        assert.deepEqual(against.truncated, { missing: 2, lastSeq: 4, headSeq: 6 });
      } finally {
        await again.close();
      }
    });

    it('`aibridge audit verify` prints the head to keep, and passes against a kept head the chain still holds', async () => {
      const { dir, report } = await filled();
      const tb = await startBridge(mock.url, {}, dir);
      try {
        const first = await verifyCli(tb);
        assert.equal(first.stdout, `ok: 6 records, chain intact\nhead: 6:${report.head!.hash}\n`);
        const kept = first.stdout.split('\n')[1]!.slice('head: '.length);
        const dev = await tb.addUser('later@example.com');
        await send(tb, dev.key, 'a record after the head was kept');
        await tb.interceptions(7);
        const later = await verifyCli(tb, '--kept', kept);
        assert.match(later.stdout, /^ok: 7 records, chain intact\nhead: 7:[0-9a-f]{64}\n$/);
        const report7 = (await tb.api<ChainReport>('GET', `/api/v1/audit/verify?kept=${kept}`, tb.adminKey))
          .body;
        assert.deepEqual(report7.kept, { seq: 6, hash: report.head!.hash, checked: true });
        await assert.rejects(verifyCli(tb, '--kept', 'nonsense'), (err: { code: number; stderr: string }) => {
          assert.equal(err.code, 2);
          assert.match(err.stderr, /--kept takes SEQ:HASH/);
          return true;
        });
      } finally {
        await tb.close();
      }
    });

    it('`aibridge audit verify` names a truncated tail apart from a broken link', async () => {
      const { dir } = await filled();
      const { file, lines } = await journalLines(dir);
      await fs.writeFile(file, `${lines.slice(0, 3).join('\n')}\n`);
      const tb = await startBridge(mock.url, {}, dir);
      try {
        await assert.rejects(verifyCli(tb), (err: { code: number; stdout: string }) => {
          assert.equal(err.code, 3);
          assert.match(err.stdout, /TRUNCATED: 3 records missing at the tail/);
          return true;
        });
      } finally {
        await tb.close();
      }
    });

    it('`aibridge audit verify` exits non-zero naming the break', async () => {
      const { dir } = await filled();
      const { file, lines } = await journalLines(dir);
      await fs.writeFile(file, `${lines.filter((_, i) => i !== 1).join('\n')}\n`);
      const tb = await startBridge(mock.url, {}, dir);
      try {
        await assert.rejects(verifyCli(tb), (err: { code: number; stdout: string }) => {
          assert.equal(err.code, 3);
          assert.match(err.stdout, /BROKEN at record 3/);
          return true;
        });
      } finally {
        await tb.close();
      }
    });
  });

  describe('retention', () => {
    it('drops whole old segments in the background and the rest of the chain still verifies', async () => {
      const dir = await tempDir('aibridge-retention-');
      const store = new EmbeddedStore({ dataDir: dir, segmentBytes: 4096 });
      await store.open();
      const now = Date.now();
      const make = (i: number, daysAgo: number): NewInterception => {
        const at = new Date(now - daysAgo * 86_400_000 + i).toISOString();
        return {
          id: `int_${randomUUID()}`,
          userId: 'usr_r',
          userEmail: 'r@example.com',
          team: null,
          keyId: 'k',
          provider: 'anthropic',
          api: 'messages',
          model: 'claude-sonnet-4-5',
          client: 'claude-code',
          sessionId: null,
          startedAt: at,
          endedAt: at,
          durationMs: 1,
          status: 'ok',
          httpStatus: 200,
          streamed: false,
          usage: { input: 1, output: 1, cacheRead: 0, cacheWrite: 0, reasoning: 0 },
          costUsd: 0.00001,
          priceKnown: true,
          prompt: `record ${i} ${'y'.repeat(300)}`,
          toolCalls: [],
          error: null,
          upstreamRequestId: null,
          redactions: [],
        };
      };
      for (let i = 0; i < 40; i++) await store.appendInterception(make(i, 100));
      for (let i = 0; i < 20; i++) await store.appendInterception(make(i, 1));
      const pruned = await store.pruneInterceptions(new Date(now - 90 * 86_400_000).toISOString());
      assert.ok(pruned >= 30 && pruned <= 40, `pruned ${pruned}`);
      const left = (await store.listInterceptions({}, 500)).items;
      assert.equal(left.length, 60 - pruned);
      assert.ok(
        left.filter((r) => r.prompt?.startsWith('record') && Date.parse(r.startedAt) > now - 2 * 86_400_000)
          .length === 20,
      );
      const report = await verifyChain(store.scanInterceptions({}), await store.chainHead());
      assert.equal(report.ok, true);
      assert.equal(report.truncated, null, 'pruned records are not missing ones');
      assert.notEqual(report.anchor, GENESIS, 'anchored on the oldest kept record');
      await store.close();
      const reopened = new EmbeddedStore({ dataDir: dir, segmentBytes: 4096 });
      await reopened.open();
      assert.equal((await reopened.listInterceptions({}, 500)).items.length, 60 - pruned);
      assert.equal((await verifyChain(reopened.scanInterceptions({}), await reopened.chainHead())).ok, true);
      await reopened.close();
    });
  });

  describe('export', () => {
    it('streams 100k records as JSONL and CSV with flat memory', async () => {
      assert.ok(global.gc, 'mocha runs node with --expose-gc (.mocharc.cjs)');
      const dir = await tempDir('aibridge-export-');
      const store = new EmbeddedStore({ dataDir: dir });
      await store.open();
      const base = Date.parse('2026-11-01T00:00:00Z');
      const N = 100_000;
      for (let b = 0; b < N; b += 5000) {
        await Promise.all(
          Array.from({ length: 5000 }, (_, k) => {
            const i = b + k;
            const at = new Date(base + i * 1000).toISOString();
            const rec: NewInterception = {
              id: `int_${randomUUID()}`,
              userId: 'usr_export',
              userEmail: 'export@example.com',
              team: 'exporters',
              keyId: 'key_export',
              provider: 'anthropic',
              api: 'messages',
              model: 'claude-sonnet-4-5',
              client: 'claude-code',
              sessionId: `s${i % 50}`,
              startedAt: at,
              endedAt: at,
              durationMs: 900,
              status: 'ok',
              httpStatus: 200,
              streamed: true,
              usage: { input: 25, output: 12, cacheRead: 100, cacheWrite: 7, reasoning: 0 },
              costUsd: 0.00031125,
              priceKnown: true,
              prompt: `export record ${i} ${'x'.repeat(200)}`,
              toolCalls: [],
              error: null,
              upstreamRequestId: null,
              redactions: [],
            };
            return store.appendInterception(rec);
          }),
        );
      }
      await store.close();

      const tb = await startBridge(mock.url, {}, dir);
      try {
        for (const format of ['jsonl', 'csv'] as const) {
          global.gc?.();
          const res = await fetch(
            `${tb.url}/api/v1/audit/export?format=${format}&since=2026-11-01T00:00:00Z`,
            {
              headers: { authorization: `Bearer ${tb.adminKey}` },
            },
          );
          assert.equal(res.status, 200);
          const reader = res.body!.getReader();
          const decoder = new TextDecoder();
          let lines = 0;
          let first = '';
          let last = '';
          let bytes = 0;
          const heap: number[] = [];
          let nextSample = 0;
          for (;;) {
            const { value, done } = await reader.read();
            if (done) break;
            bytes += value.length;
            const text = decoder.decode(value, { stream: true });
            if (!first) first = text;
            for (let i = text.indexOf('\n'); i !== -1; i = text.indexOf('\n', i + 1)) lines++;
            last = text;
            if (lines >= nextSample) {
              // What the heap holds, not garbage a busy suite has not collected yet (CI saw 52 MB of that).
              global.gc?.();
              heap.push(process.memoryUsage().heapUsed);
              nextSample += 10_000;
            }
          }
          assert.equal(lines, format === 'csv' ? N + 1 : N, `${format} lines`);
          if (format === 'csv') assert.match(first, /^seq,id,startedAt/);
          else assert.equal((JSON.parse(first.split('\n')[0]!) as Interception).seq, 1);
          assert.match(last, /export record 99999/);
          const growth = Math.max(...heap) - Math.min(...heap);
          // The export is ~40 MB; holding it would grow the heap by far more than this.
          assert.ok(
            growth < bytes / 2,
            `${format}: heap grew ${Math.round(growth / 1e6)} MB while streaming ${Math.round(bytes / 1e6)} MB`,
          );
        }
      } finally {
        await tb.close();
      }
    });
  });
});
