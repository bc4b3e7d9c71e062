import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import path from 'node:path';
import { crc32 } from 'node:zlib';
import { verifyStoredChain } from '../../server/audit/chain-anchor';
import { backupDataDir } from '../../server/store/embedded/backup';
import { CHECKPOINT_FILE } from '../../server/store/embedded/checkpoint';
import { LOCK_FILE } from '../../server/store/embedded/dir-lock';
import { EmbeddedStore } from '../../server/store/embedded/embedded-store';
import type { JournalWarning } from '../../server/store/embedded/journal';
import type { NewInterception } from '../../server/store/types';
import { tempDir } from '../helpers/temp-dirs';
import { newRecord } from './contract';

const T0 = Date.parse('2026-03-02T10:00:00.000Z');

/** Small segments: a few dozen records fill several. */
const SEGMENT_BYTES = 4096;

/** A record with what each of the store's in-memory parts keeps: tool calls and results, answers' ids. */
function record(i: number): NewInterception {
  // Twenty minutes apart: sixty records span a day's hours.
  const at = T0 + i * 20 * 60_000;
  return newRecord(i, {
    startedAt: new Date(at).toISOString(),
    endedAt: new Date(at + 500).toISOString(),
    toolCalls:
      i % 3 === 1
        ? [
            {
              id: `call_${i}`,
              name: i % 2 === 0 ? 'Bash' : 'mcp__github__merge_pull_request',
              server: null,
              input: { n: i },
              injected: false,
              at: new Date(at).toISOString(),
            },
          ]
        : [],
    ...(i % 3 === 2
      ? { toolResults: [{ callId: `call_${i - 4}`, isError: i % 2 === 0, content: null, contentLength: 3 }] }
      : {}),
    ...(i % 4 === 0 ? { responseId: `resp_${i}`, responseItems: [`msg_${i}`, `fc_${i}`] } : {}),
  });
}

async function open(dir: string, warnings: JournalWarning[] = []): Promise<EmbeddedStore> {
  const store = new EmbeddedStore({
    dataDir: dir,
    segmentBytes: SEGMENT_BYTES,
    onWarning: (w) => warnings.push(w),
  });
  await store.open();
  return store;
}

async function fill(store: EmbeddedStore, from: number, to: number): Promise<void> {
  for (let i = from; i < to; i++) await store.appendInterception(record(i));
}

/** A data dir whose store wrote records `0` to `count - 1` and stopped cleanly (so has its checkpoint). */
async function closedWith(count: number): Promise<string> {
  const dir = await tempDir();
  const store = await open(dir);
  await fill(store, 0, count);
  await store.close();
  return dir;
}

/**
 * A store closed after `closed` records, opened again for records up to `to`, and the disk as a
 * crash then would leave it: `crashed` with the first close's checkpoint and the later records
 * past it, `whole` the same without the checkpoint.
 */
async function crashImage(closed: number, to: number): Promise<{ crashed: string; whole: string }> {
  const dir = await closedWith(closed);
  const store = await open(dir);
  await fill(store, closed, to);
  const crashed = await copyDir(dir);
  const whole = await copyDir(dir, [CHECKPOINT_FILE]);
  await store.close();
  return { crashed, whole };
}

/** A copy of the data dir as the disk holds it now (a crash's image, with no lock), less `except`. */
async function copyDir(from: string, except: string[] = []): Promise<string> {
  const to = await tempDir();
  await fs.cp(from, to, {
    recursive: true,
    filter: (src) => ![LOCK_FILE, ...except].includes(path.basename(src)),
  });
  return to;
}

/** Every page of records of a filter. */
async function pages(store: EmbeddedStore, filter: Parameters<EmbeddedStore['listInterceptions']>[0]) {
  const out = [];
  let cursor: string | undefined;
  do {
    const page = await store.listInterceptions(filter, 7, cursor);
    out.push(...page.items);
    cursor = page.nextCursor ?? undefined;
  } while (cursor !== undefined);
  return out;
}

/** What the store answers from memory: the index, the rollups, the tool results, the chain. */
async function view(store: EmbeddedStore) {
  return {
    all: await pages(store, {}),
    userA: await pages(store, { userId: 'usr_a' }),
    bash: await pages(store, { tool: 'bash' }),
    gpt: await pages(store, { model: 'gpt-5' }),
    session: await pages(store, { sessionId: 'ses_1' }),
    errors: await pages(store, { status: 'error', team: 'red' }),
    byId: await store.getInterception('int_000013'),
    usage: await store.usageBuckets({}),
    usageB: await store.usageBuckets({ userId: 'usr_b' }),
    last: await store.lastRequestAt(),
    owners: await store.responseItemOwners(['msg_4', 'fc_8', 'msg_40', 'nothing']),
    responseOwner: await store.responseOwner('resp_12'),
    head: await store.chainHead(),
    verify: (await verifyStoredChain(store)).ok,
  };
}

/** The journal's segment files, oldest first. */
async function segments(dir: string): Promise<string[]> {
  return (await fs.readdir(path.join(dir, 'interceptions'))).filter((n) => n.endsWith('.jsonl')).sort();
}

describe('embedded store: the checkpoint a close leaves', () => {
  it('a restart from it answers as a replay of the whole journal does, and goes on alike', async () => {
    const dir = await closedWith(60);
    assert.ok((await fs.stat(path.join(dir, CHECKPOINT_FILE))).size > 0);
    assert.ok((await segments(dir)).length >= 3, 'the records fill several segments');
    const whole = await copyDir(dir, [CHECKPOINT_FILE]);

    const warnings: JournalWarning[] = [];
    const fromCheckpoint = await open(dir, warnings);
    const replayed = await open(whole);
    assert.deepEqual(warnings, []);
    const before = await view(fromCheckpoint);
    assert.equal(before.all.length, 60);
    assert.ok(before.usage.length > 0 && before.owners.get('msg_4') === 'usr_a');
    // Tool results reported by later records are linked to their calls (the recent results in memory).
    assert.ok(before.all.some((r) => r.toolCalls.some((c) => c.result !== null)));
    assert.deepEqual(before, await view(replayed));
    // Numbering, the chain and the index go on from where the checkpoint left them.
    await fill(fromCheckpoint, 60, 75);
    await fill(replayed, 60, 75);
    const after = await view(fromCheckpoint);
    assert.equal(after.all.length, 75);
    assert.equal(after.verify, true);
    assert.deepEqual(after, await view(replayed));
    await fromCheckpoint.close();
    await replayed.close();
  });

  it('after a crash, a start reads the records written since the checkpoint, and not those before it', async () => {
    // The checkpoint of the first close, 30 records past it.
    const { crashed, whole } = await crashImage(40, 70);

    // A record the checkpoint holds, changed on disk with a checksum to match: a start that read it
    // again would count the new figure.
    const seg = path.join(crashed, 'interceptions', (await segments(crashed))[0]!);
    const lines = (await fs.readFile(seg, 'utf8')).split('\n');
    const at = lines.findIndex((l) => l.includes('"id":"int_000001"'));
    const json = lines[at]!.slice(9).replace('"input":101,', '"input":901,');
    assert.notEqual(json, lines[at]!.slice(9));
    lines[at] = `${crc32(json).toString(16).padStart(8, '0')} ${json}`;
    await fs.writeFile(seg, lines.join('\n'));

    const restarted = await open(crashed);
    const replayed = await open(whole);
    const a = await view(restarted);
    const b = await view(replayed);
    assert.equal(a.all.length, 70);
    const input = (v: typeof a) => v.usage.reduce((n, u) => n + u.usage.input, 0);
    // The rollups of the first 40 records came from the checkpoint: the changed line was not read.
    assert.equal(input(a), input(b));
    const memory = (v: typeof a) => ({ ...v, all: v.all.length, session: v.session.length, verify: null });
    assert.deepEqual(memory(a), memory(b));
    // The record itself is read from disk, where verify finds the change.
    assert.equal(a.verify, false);
    assert.equal(b.verify, true);
    await restarted.close();
    await replayed.close();
  });

  it('is passed over, with a warning, when the journal is not as it left it, and the start replays it all', async () => {
    const dir = await closedWith(40);
    const reference = await copyDir(dir, [CHECKPOINT_FILE]);

    // The last record cut off the journal's end (a restore of an older copy of its last segment).
    const cut = await copyDir(dir);
    const last = path.join(cut, 'interceptions', (await segments(cut)).at(-1)!);
    const text = await fs.readFile(last, 'utf8');
    await fs.writeFile(last, text.slice(0, text.lastIndexOf('\n', text.length - 2) + 1));
    // The checkpoint damaged.
    const damaged = await copyDir(dir);
    const file = path.join(damaged, CHECKPOINT_FILE);
    const bytes = await fs.readFile(file);
    bytes[bytes.length - 10] = (bytes[bytes.length - 10] ?? 0) ^ 0xff;
    await fs.writeFile(file, bytes);
    // Another data dir's checkpoint.
    const other = await tempDir();
    const otherStore = await open(other);
    await fill(otherStore, 100, 130);
    await otherStore.close();
    const foreign = await copyDir(dir);
    await fs.copyFile(path.join(other, CHECKPOINT_FILE), path.join(foreign, CHECKPOINT_FILE));

    const expected = await view(await open(reference));
    for (const [name, d, reason] of [
      ['cut', cut, /journal segment \d+ changed size/],
      ['damaged', damaged, /damaged/],
      ['foreign', foreign, /changed size|not in the journal/],
    ] as const) {
      const warnings: JournalWarning[] = [];
      const store = await open(d, warnings);
      const passed = warnings.filter((w) => w.file.endsWith(CHECKPOINT_FILE));
      assert.equal(passed.length, 1, name);
      assert.match(passed[0]!.reason, reason, name);
      assert.match(passed[0]!.reason, /the journal is replayed whole/);
      const v = await view(store);
      if (name === 'cut') assert.equal(v.all.length, 39);
      else assert.deepEqual(v, expected, name);
      await store.close();
    }
  });

  it('is passed over when its header is changed, or the last record it names is damaged', async () => {
    const dir = await closedWith(40);
    const reference = await view(await open(await copyDir(dir, [CHECKPOINT_FILE])));

    // The last segment's size made smaller, digits for digits: a replay from there would read
    // records the checkpoint holds a second time.
    const edited = await copyDir(dir);
    const file = path.join(edited, CHECKPOINT_FILE);
    const bytes = await fs.readFile(file);
    const header = bytes.toString('latin1', 0, 2000).split('\n')[1]!;
    const size = /\[(\d+),(\d+)\]\]/.exec(header)!;
    const smaller = String(Number(size[2]) - 100).padStart(size[2]!.length, '1');
    const at = bytes.indexOf(`[${size[1]},${size[2]}]]`);
    bytes.write(`[${size[1]},${smaller}]]`, at, 'latin1');
    await fs.writeFile(file, bytes);
    // The last record's line damaged on disk (a replay sets it aside as a torn tail).
    const torn = await copyDir(dir);
    const last = path.join(torn, 'interceptions', (await segments(torn)).at(-1)!);
    const text = Buffer.from(await fs.readFile(last));
    text[text.length - 20] = text[text.length - 20] === 0x41 ? 0x42 : 0x41;
    await fs.writeFile(last, text);
    const tornReference = await view(await open(await copyDir(torn, [CHECKPOINT_FILE])));

    for (const [name, d, expected, reason] of [
      ['edited', edited, reference, /damaged|does not hold together/],
      ['torn', torn, tornReference, /the last record it holds is not in the journal/],
    ] as const) {
      const warnings: JournalWarning[] = [];
      const store = await open(d, warnings);
      const passed = warnings.filter((w) => w.file.endsWith(CHECKPOINT_FILE));
      assert.equal(passed.length, 1, name);
      assert.match(passed[0]!.reason, reason, name);
      assert.deepEqual(await view(store), expected, name);
      // Passed over once, not read again at the next start.
      await assert.rejects(fs.stat(path.join(d, CHECKPOINT_FILE)), { code: 'ENOENT' });
      await store.close();
    }
    assert.equal(tornReference.all.length, 39);
  });

  it('keeps the rollups as they were: a late record past the cap on an hour’s models counts as it did', async () => {
    const dir = await tempDir();
    const first = await open(dir);
    const rec = (i: number, at: number, model: string): NewInterception =>
      newRecord(i, {
        userId: 'usr_a',
        model,
        startedAt: new Date(at).toISOString(),
        endedAt: new Date(at + 500).toISOString(),
      });
    // 64 models in one hour (the cap), an hour three days on, then two more models in the first.
    for (let m = 0; m < 64; m++) await first.appendInterception(rec(m, T0 + m * 1000, `model-${m}`));
    await first.appendInterception(rec(64, T0 + 3 * 86_400_000, 'model-0'));
    await first.appendInterception(rec(65, T0 + 70_000, 'late'));
    await first.close();
    const whole = await copyDir(dir, [CHECKPOINT_FILE]);
    const fromCheckpoint = await open(dir);
    const replayed = await open(whole);
    for (const s of [fromCheckpoint, replayed]) await s.appendInterception(rec(66, T0 + 80_000, 'later'));
    const models = async (s: EmbeddedStore) =>
      (await s.usageBuckets({ userId: 'usr_a' })).map((b) => `${b.hour} ${b.model} ${b.requests}`).sort();
    const a = await models(fromCheckpoint);
    assert.ok(a.some((m) => m.endsWith(' late 1')) && a.some((m) => m.endsWith(' later 1')));
    assert.deepEqual(a, await models(replayed));
    await fromCheckpoint.close();
    await replayed.close();
  });

  it('tells where a damaged record is in the part it replays, as a replay of it all does', async () => {
    const { crashed } = await crashImage(30, 34);
    // A record written after the checkpoint, in its last segment, damaged (not the journal's last).
    const seg = path.join(crashed, 'interceptions', (await segments(crashed)).at(-1)!);
    const text = await fs.readFile(seg, 'utf8');
    const at = text.indexOf('"id":"int_000031"');
    assert.ok(at > 0);
    await fs.writeFile(seg, `${text.slice(0, at)}"id":"int_0000X1"${text.slice(at + 17)}`);
    const whole = await copyDir(crashed, [CHECKPOINT_FILE]);
    const warned = async (d: string) => {
      const warnings: JournalWarning[] = [];
      const store = await open(d, warnings);
      const n = (await pages(store, {})).length;
      await store.close();
      return {
        n,
        corrupt: warnings.filter((w) => w.reason === 'corrupt entry skipped').map((w) => w.offset),
      };
    };
    const a = await warned(crashed);
    assert.deepEqual(a, await warned(whole));
    assert.equal(a.n, 33);
    assert.equal(a.corrupt.length, 1);
    // In bytes: the prompts hold characters of several.
    assert.equal(Buffer.byteLength(text.slice(0, text.lastIndexOf('\n', at) + 1)), a.corrupt[0]);
  });

  it('a prune drops it; the start after folds old pruned hours by the day, as a start without one does', async () => {
    const dir = await closedWith(60);
    const store = await open(dir);
    const cutoff = (await store.getInterception('int_000030'))!.startedAt;
    const pruned = await store.pruneInterceptions(cutoff);
    assert.ok(pruned > 0);
    await assert.rejects(fs.stat(path.join(dir, CHECKPOINT_FILE)), { code: 'ENOENT' });
    // Requests and input tokens by day and user.
    const days = (v: Awaited<ReturnType<typeof view>>) => {
      const out = new Map<string, [number, number]>();
      for (const u of v.usage) {
        const k = `${u.hour.slice(0, 10)} ${u.userId}`;
        const [r, i] = out.get(k) ?? [0, 0];
        out.set(k, [r + u.requests, i + u.usage.input]);
      }
      return [...out].sort();
    };
    const live = await view(store);
    await store.close();
    // The records are from March: their pruned hours are past FOLD_AFTER_DAYS.
    const whole = await copyDir(dir, [CHECKPOINT_FILE]);
    const warnings: JournalWarning[] = [];
    const fromCheckpoint = await open(dir, warnings);
    assert.deepEqual(warnings, []);
    const replayed = await open(whole);
    const a = await view(fromCheckpoint);
    const b = await view(replayed);
    assert.deepEqual(days(a), days(live));
    assert.deepEqual(days(a), days(b));
    assert.ok(a.usage.length < live.usage.length, 'pruned hours are summed by the day');
    // Only the hour where the pruned records end and the kept ones begin may be split otherwise.
    assert.ok(Math.abs(a.usage.length - b.usage.length) <= 4);
    assert.deepEqual({ ...a, usage: [], usageB: [] }, { ...b, usage: [], usageB: [] });
    await fromCheckpoint.close();
    await replayed.close();
  });

  it('is not part of a backup', async () => {
    const dir = await closedWith(10);
    const to = path.join(await tempDir(), 'copy');
    await backupDataDir(dir, to);
    await assert.rejects(fs.stat(path.join(to, CHECKPOINT_FILE)), { code: 'ENOENT' });
    const copy = await open(to);
    assert.equal((await pages(copy, {})).length, 10);
    await copy.close();
  });
});
