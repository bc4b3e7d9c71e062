import assert from 'node:assert/strict';
import { csvLine } from '../../server/http/csv';
import { AnthropicMock } from '../helpers/anthropic-mock';
import { startBridge, type TestBridge } from '../helpers/bridge';

/** RFC 4180 fields of one CSV text, split on `sep` as a spreadsheet set to that separator would. */
function parse(text: string, sep: ',' | ';'): string[][] {
  const rows: string[][] = [];
  let row: string[] = [];
  let field = '';
  let quoted = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!;
    if (quoted) {
      if (c === '"' && text[i + 1] === '"') {
        field += '"';
        i++;
      } else if (c === '"') quoted = false;
      else field += c;
    } else if (c === '"' && field === '') quoted = true;
    else if (c === sep) {
      row.push(field);
      field = '';
    } else if (c === '\n' || (c === '\r' && text[i + 1] === '\n')) {
      if (c === '\r') i++;
      row.push(field);
      rows.push(row);
      row = [];
      field = '';
    } else field += c;
  }
  if (field !== '' || row.length > 0) rows.push([...row, field]);
  return rows;
}

const FORMULA = /^[=+\-@]/;

/** Text a member chooses, shaped to become a formula cell in a spreadsheet. */
const HOSTILE = [
  "sess;=cmd|' /C calc'!A0;x",
  '=HYPERLINK("http://evil.example","click")',
  'a,=1+1',
  'x\t@SUM(1)',
  '+1;-2',
  'quote";=evil',
  `x;"=cmd|' /C calc'!A0`,
  'hello\n=HYPERLINK("http://evil.example")',
  'two\r\n@SUM(1)',
];

describe('CSV exports: no member-chosen text becomes a formula, whichever separator the spreadsheet uses', () => {
  it('csvLine: each hostile cell reads back as itself split on ",", and split on "," or ";" no cell starts a formula', () => {
    const text = csvLine(['id', ...HOSTILE, 42, null]);
    const comma = parse(text, ',');
    assert.equal(comma.length, 1);
    assert.equal(comma[0]!.length, HOSTILE.length + 3);
    // Each reads back as it was, but for the quote mark before a formula's first character.
    for (const [i, h] of HOSTILE.entries())
      assert.equal(comma[0]![i + 1]!.replace(/^'/, '').replace(/([;\t\r\n]"*)'/g, '$1'), h);
    for (const sep of [',', ';'] as const)
      for (const cell of parse(text, sep).flat()) assert.doesNotMatch(cell, FORMULA, `${sep}: ${cell}`);
  });

  describe('through the audit export', () => {
    let mock: AnthropicMock;
    let tb: TestBridge;
    before(async () => {
      mock = await new AnthropicMock().start();
      tb = await startBridge(mock.url);
    });
    after(async () => {
      await tb.close();
      await mock.stop();
    });

    it("a session id and prompt a member chose reach the admin's CSV as inert cells", async () => {
      const { key } = await tb.addUser('csv-member@example.com');
      const res = await fetch(`${tb.url}/anthropic/v1/messages`, {
        method: 'POST',
        headers: {
          'x-api-key': key,
          'content-type': 'application/json',
          'anthropic-version': '2023-06-01',
          'user-agent': 'claude-cli/2.1.0 (external, cli)',
          'x-claude-code-session-id': HOSTILE[0]!,
        },
        body: JSON.stringify({
          model: 'claude-sonnet-4-6',
          max_tokens: 5,
          messages: [{ role: 'user', content: HOSTILE.join(' ') }],
        }),
      });
      assert.equal(res.status, 200);
      await tb.interceptions(1);
      const csv = await fetch(`${tb.url}/api/v1/audit/export?format=csv`, {
        headers: { authorization: `Bearer ${tb.adminKey}` },
      });
      const text = await csv.text();
      const [header, row] = parse(text, ',');
      assert.equal(row![header!.indexOf('sessionId')], "sess;'=cmd|' /C calc'!A0;x");
      for (const sep of [',', ';'] as const)
        for (const cell of parse(text, sep).flat()) assert.doesNotMatch(cell, FORMULA, `${sep}: ${cell}`);
    });

    it("terminal escapes a member chose never reach the admin's CSV raw; JSONL escapes the line separators too", async () => {
      const { key } = await tb.addUser('escapes@example.com');
      // Clear the screen, draw a fake verdict, hide a link: what `aibridge audit export --format csv`
      // in a terminal would have run. U+2028 and U+0085 split lines for Python's splitlines().
      const prompt =
        'a\u001b[2J\u001b[H\u001b[32mok: 0 records, chain intact\u001b[0m \u001b]8;;https://evil.example/\u0007x\u009b1m b\u2028c\u0085d\u2029e';
      const res = await fetch(`${tb.url}/anthropic/v1/messages`, {
        method: 'POST',
        headers: { 'x-api-key': key, 'content-type': 'application/json', 'anthropic-version': '2023-06-01' },
        body: JSON.stringify({
          model: 'claude-sonnet-4-6',
          max_tokens: 5,
          metadata: { user_id: 'sess\u001b[2Jx' },
          messages: [{ role: 'user', content: prompt }],
        }),
      });
      assert.equal(res.status, 200);
      await tb.interceptions(2);
      const csv = await (
        await fetch(`${tb.url}/api/v1/audit/export?format=csv&user=escapes%40example.com`, {
          headers: { authorization: `Bearer ${tb.adminKey}` },
        })
      ).text();
      assert.match(csv, /ok: 0 records/, 'the prompt is in the export');
      // biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what is looked for
      assert.doesNotMatch(csv, /[\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f-\u009f]/);
      const jsonl = await (
        await fetch(`${tb.url}/api/v1/audit/export?user=escapes%40example.com`, {
          headers: { authorization: `Bearer ${tb.adminKey}` },
        })
      ).text();
      assert.doesNotMatch(jsonl, /[\u007f-\u009f\u2028\u2029]/);
      // Python's str.splitlines() boundaries.
      const lines = jsonl
        // biome-ignore lint/suspicious/noControlCharactersInRegex: the line boundaries looked for
        .split(/\r\n|[\n\r\u2028\u2029\u0085\u000b\u000c\u001c-\u001e]/)
        .filter((l) => l !== '');
      assert.equal(lines.length, 1, 'one record, one line, however a reader splits lines');
      assert.match((JSON.parse(lines[0]!) as { prompt: string }).prompt, /\u009b1m b\u2028c\u0085d\u2029e/);
    });

    it("a member's own CSV export has no chain hash, as their JSONL export has none", async () => {
      const { key } = await tb.addUser('own-csv@example.com');
      const res = await fetch(`${tb.url}/anthropic/v1/messages`, {
        method: 'POST',
        headers: { 'x-api-key': key, 'content-type': 'application/json', 'anthropic-version': '2023-06-01' },
        body: JSON.stringify({
          model: 'claude-sonnet-4-6',
          max_tokens: 5,
          messages: [{ role: 'user', content: 'hi' }],
        }),
      });
      assert.equal(res.status, 200);
      const mine = (await tb.interceptions(1)).find((r) => r.userEmail === 'own-csv@example.com');
      assert.ok(mine?.hash);
      const csv = async (who: string): Promise<string[][]> =>
        parse(
          await (
            await fetch(`${tb.url}/api/v1/audit/export?format=csv&user=own-csv%40example.com`, {
              headers: { authorization: `Bearer ${who}` },
            })
          ).text(),
          ',',
        );
      const [header, row] = await csv(key);
      assert.equal(row![header!.indexOf('hash')], '', 'empty for the member');
      const [adminHeader, adminRow] = await csv(tb.adminKey);
      assert.equal(adminRow![adminHeader!.indexOf('hash')], mine.hash, 'the admin has it');
    });
  });
});
