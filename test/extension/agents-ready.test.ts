import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs/promises';
import { createRequire } from 'node:module';
import path from 'node:path';
import { prepareAgents } from '../../extension/agents/prepare-agents';
import { CLAUDE } from '../helpers/agent-cli';
import { tempDir } from '../helpers/bridge';

const CODEX = path.resolve('node_modules/.bin/codex');
/** A port nothing listens on: the agents must reach their prompt without any answer from the bridge. */
const DEAD_URL = 'http://127.0.0.1:9';
const COLS = 100;
const ROWS = 30;

/** The parts of node-pty and @xterm/headless this test uses (code-server ships both). */
interface Pty {
  onData(cb: (d: string) => void): void;
  onExit(cb: () => void): void;
  write(d: string): void;
  kill(): void;
}
interface PtyModule {
  spawn(
    file: string,
    args: string[],
    o: { name: string; cols: number; rows: number; cwd: string; env: NodeJS.ProcessEnv },
  ): Pty;
}
interface HeadlessTerminal {
  write(d: string): void;
  onData(cb: (d: string) => void): void;
  buffer: {
    active: { length: number; getLine(y: number): { translateToString(trim: boolean): string } | undefined };
  };
  dispose(): void;
}
interface XtermModule {
  Terminal: new (o: { cols: number; rows: number; allowProposedApi: boolean }) => HeadlessTerminal;
}

function loadTerminal(): { pty: PtyModule; xterm: XtermModule } {
  const base = path.resolve('.vscode-e2e/node_modules/code-server/lib/vscode/node_modules');
  try {
    const from = createRequire(path.join(base, 'noop.js'));
    return { pty: from('node-pty') as PtyModule, xterm: from('@xterm/headless') as XtermModule };
  } catch (err) {
    throw new Error(
      `node-pty and @xterm/headless come with code-server: run scripts/e2e-setup.sh (${(err as Error).message})`,
    );
  }
}

/** An agent running in a pseudo-terminal, its screen rendered as a terminal would show it. */
class Screen {
  private readonly term: HeadlessTerminal;
  private readonly proc: Pty;
  private exited = false;

  constructor([file, ...args]: readonly string[], cwd: string, env: NodeJS.ProcessEnv) {
    const { pty, xterm } = loadTerminal();
    this.term = new xterm.Terminal({ cols: COLS, rows: ROWS, allowProposedApi: true });
    this.proc = pty.spawn(file ?? '', args, { name: 'xterm-256color', cols: COLS, rows: ROWS, cwd, env });
    this.proc.onData((d) => this.term.write(d));
    // Terminal replies (cursor position, device attributes) go back to the agent, as in VS Code.
    this.term.onData((d) => {
      if (!this.exited) this.proc.write(d);
    });
    this.proc.onExit(() => {
      this.exited = true;
    });
  }

  text(): string {
    const b = this.term.buffer.active;
    const lines: string[] = [];
    for (let y = 0; y < b.length; y++) lines.push(b.getLine(y)?.translateToString(true) ?? '');
    return lines.join('\n');
  }

  /** Polls the screen until `done` holds (no fixed sleeps); fails with the screen on timeout. */
  async until(done: (screen: string) => boolean, what: string, timeoutMs = 20_000): Promise<string> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const s = this.text();
      if (done(s)) return s;
      if (this.exited || Date.now() > deadline) {
        assert.fail(
          `${what}: not on screen after ${timeoutMs} ms${this.exited ? ' (the agent exited)' : ''}:\n${s}`,
        );
      }
      await new Promise((r) => setTimeout(r, 150));
    }
  }

  close(): void {
    if (!this.exited) this.proc.kill();
    this.term.dispose();
  }
}

/** What a new VS Code terminal has while signed in (extension/terminal/env.ts), and no more. */
function terminalEnv(home: string): NodeJS.ProcessEnv {
  return {
    PATH: process.env.PATH,
    HOME: home,
    TMPDIR: home,
    TERM: 'xterm-256color',
    LANG: 'C.UTF-8',
    ANTHROPIC_BASE_URL: `${DEAD_URL}/anthropic`,
    ANTHROPIC_AUTH_TOKEN: 'aib_test_key',
    OPENAI_BASE_URL: `${DEAD_URL}/openai/v1`,
    OPENAI_API_KEY: 'aib_test_key',
    // No update checks from a test.
    DISABLE_AUTOUPDATER: '1',
  };
}

async function workspace(git: boolean): Promise<{ home: string; folder: string }> {
  const home = await tempDir('aibridge-agents-home-');
  // The real path: the agents key their trust by it (macOS's /tmp is a link to /private/tmp).
  const folder = await fs.realpath(await tempDir('aibridge-agents-ws-'));
  if (git) execFileSync('git', ['init', '-q', folder]);
  return { home, folder };
}

async function onScreen(
  cmd: readonly string[],
  folder: string,
  home: string,
  done: (screen: string) => boolean,
  what: string,
): Promise<string> {
  const screen = new Screen(cmd, folder, terminalEnv(home));
  try {
    const s = await screen.until(done, what);
    // Still there a moment later: a question that came after the prompt would fail the test.
    await new Promise((r) => setTimeout(r, 1000));
    return screen.text() === s ? s : await screen.until(done, what, 2000);
  } finally {
    screen.close();
  }
}

/** Claude's empty input line ("❯" alone; a dialog's "❯ 1. Yes…" has text after it), and no question. */
const claudeAtPrompt = (s: string) => /^❯\s*$/m.test(s) && !/trust|text style/i.test(s);
/**
 * Codex's composer with its status line ("<model> · <folder>"): while its splash is up it already
 * draws "› Ask Codex…" under the logo, and the sign-in or trust question replaces that; only the
 * real prompt has the status line.
 */
const codexAtPrompt = (folder: string) => (s: string) =>
  /^› Ask Codex/m.test(s) && s.includes(`· ${folder}`) && !/Sign in|Trust this folder/i.test(s);

describe('extension: agents start at once (the real claude and codex in a terminal)', function () {
  this.timeout(60_000);
  const dirs: string[] = [];
  after(async () => {
    for (const d of dirs) await fs.rm(d, { recursive: true, force: true });
  });
  async function fresh(git: boolean) {
    const w = await workspace(git);
    dirs.push(w.home, w.folder);
    return w;
  }

  it('claude: without the extension it asks (theme, then trust); prepared, it reaches its prompt', async () => {
    const [a, b, c] = await Promise.all([fresh(false), fresh(false), fresh(false)]);
    // Onboarding alone is not enough: the folder's safety check comes next.
    await prepareAgents({ url: DEAD_URL, trustedFolders: [], env: { HOME: b.home } });
    const r = await prepareAgents({ url: DEAD_URL, trustedFolders: [c.folder], env: { HOME: c.home } });
    assert.deepEqual(r.problems, []);
    const [s1, , s3] = await Promise.all([
      onScreen([CLAUDE], a.folder, a.home, (s) => /text style/i.test(s), 'the theme picker'),
      onScreen(
        [CLAUDE],
        b.folder,
        b.home,
        (s) => /Quick safety check|trust this folder/i.test(s),
        'the trust question',
      ),
      onScreen([CLAUDE], c.folder, c.home, claudeAtPrompt, 'the claude prompt'),
    ]);
    assert.doesNotMatch(s1, /^❯\s*$/m);
    assert.match(s3, /Claude Code/);
  });

  it('codex in a git repo: without the extension it asks to sign in; prepared, it reaches its prompt', async () => {
    const [a, b, c] = await Promise.all([fresh(true), fresh(true), fresh(true)]);
    // The provider alone is not enough in a git repo: the folder's trust comes next.
    await prepareAgents({ url: DEAD_URL, trustedFolders: [], env: { HOME: b.home } });
    const r = await prepareAgents({ url: DEAD_URL, trustedFolders: [c.folder], env: { HOME: c.home } });
    assert.deepEqual(r.problems, []);
    assert.equal(r.codexIsDefault, true);
    // The three at once: codex spends its start-up time waiting, not computing.
    const [, , s3] = await Promise.all([
      onScreen([CODEX], a.folder, a.home, (s) => /Sign in with ChatGPT/i.test(s), 'the sign-in screen'),
      onScreen([CODEX], b.folder, b.home, (s) => /Trust this folder/i.test(s), 'the trust question'),
      onScreen([CODEX], c.folder, c.home, codexAtPrompt(c.folder), 'the codex prompt'),
    ]);
    assert.match(s3, /OpenAI Codex/);
  });

  it('codex: the legacy profile an earlier version wrote (codex 0.169 refuses to start) is repaired', async () => {
    const a = await fresh(false);
    const legacy = [
      'profile = "aibridge"',
      '',
      '[model_providers.aibridge]',
      'name = "AI Bridge"',
      `base_url = "${DEAD_URL}/openai/v1"`,
      'env_key = "OPENAI_API_KEY"',
      'wire_api = "responses"',
      '',
      '[profiles.aibridge]',
      'model_provider = "aibridge"',
      '',
    ].join('\n');
    await fs.mkdir(path.join(a.home, '.codex'));
    await fs.writeFile(path.join(a.home, '.codex', 'config.toml'), legacy);
    await onScreen(
      [CODEX],
      a.folder,
      a.home,
      (s) => /legacy .*no longer supported/s.test(s),
      'the legacy-config error',
    );

    const r = await prepareAgents({ url: DEAD_URL, trustedFolders: [a.folder], env: { HOME: a.home } });
    assert.deepEqual(r.problems, []);
    await onScreen([CODEX], a.folder, a.home, codexAtPrompt(a.folder), 'the codex prompt');
    await onScreen(
      [CODEX, '--profile', 'aibridge'],
      a.folder,
      a.home,
      codexAtPrompt(a.folder),
      'the codex prompt (--profile aibridge)',
    );
  });
});
