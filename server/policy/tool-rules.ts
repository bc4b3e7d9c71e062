import { RE2JS } from 're2js';
import type { ToolPolicyMark, ToolPolicyRule } from '../../shared/tool-policy';
import { patternProblem } from '../audit/pattern-guard';
import { BridgeError } from '../errors';

/**
 * Arguments longer than this are not searched at all: a rule with an argument pattern is taken to
 * match them (a deny rule denies), as the bridge cannot vouch for what it did not read.
 */
export const ARGUMENT_SEARCH_LIMIT = 1024 * 1024;
/** Most rules in one set, and the longest pattern: the set is evaluated on every tool call. */
export const MAX_RULES = 200;
const MAX_PATTERN = 2048;
const ID = /^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$/;

/** Whether a pattern occurs in a text. */
export interface ArgumentPattern {
  test(text: string): boolean;
}

/** A rule with its globs and pattern compiled once, when the set is written or loaded. */
export interface CompiledRule {
  rule: ToolPolicyRule;
  tool: ToolGlob;
  args: ArgumentPattern | null;
}

/**
 * An argument pattern on RE2's engine (re2js): time linear in the text, whatever the pattern and
 * whatever the model or a member puts in a call's arguments. On V8's backtracking engine the
 * force-push example rule took 12 s on 16 KiB of `git push --force ` repeated, the event loop
 * stopped meanwhile (docs/governance.md#patterns). RE2 has no lookarounds and no back-references;
 * a pattern using them is refused when a rule set is written.
 */
export function compileArgumentPattern(source: string): ArgumentPattern {
  const re = RE2JS.compile(source);
  // A pattern with no unbounded repetition and little work per position (the redaction guard's
  // test) is linear on V8's engine too, which runs it some hundred times faster: `rm -rf /`,
  // `SECRET`. RE2 still vets its syntax above, so both engines take the same patterns.
  const js = patternProblem(source) === null ? jsRegExp(source) : undefined;
  if (js) return { test: (text) => js.test(text) };
  return { test: (text) => re.matcher(text).find() };
}

/** The pattern on JavaScript's engine; undefined for RE2 syntax it lacks (`(?i)`, `\z`, `[[:alpha:]]`). */
function jsRegExp(source: string): RegExp | undefined {
  try {
    return new RegExp(source);
  } catch {
    return undefined;
  }
}

/**
 * A pattern a bridge before RE2 stored that RE2 cannot compile: taken to match every call of its
 * tools, so a deny rule keeps denying rather than stop guarding. The admin is told to rewrite it.
 */
const MATCHES_ALL: ArgumentPattern = { test: () => true };

/** Whose request a call is in, for the rules' scopes. */
export interface Who {
  userId: string;
  email: string;
  team: string | null;
}

function refuse(at: string, why: string): never {
  throw new BridgeError('invalid_tool_policy', `${at}: ${why}`);
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Whether a tool name matches a rule's glob. */
export interface ToolGlob {
  test(name: string): boolean;
}

/** Whether `seg` (literal but for `?`, one character, when `wild`) is in `s` at `at`. */
function segmentAt(seg: string, s: string, at: number, wild: boolean): boolean {
  for (let k = 0; k < seg.length; k++) if (!(wild && seg[k] === '?') && seg[k] !== s[at + k]) return false;
  return true;
}

/** Where `seg` first occurs in `s` at or after `from`, ending by `end`; -1: nowhere. */
function findSegment(seg: string, s: string, from: number, end: number, wild: boolean): number {
  if (!wild || !seg.includes('?')) {
    const i = s.indexOf(seg, from);
    return i >= 0 && i + seg.length <= end ? i : -1;
  }
  for (let i = from; i + seg.length <= end; i++) if (segmentAt(seg, s, i, wild)) return i;
  return -1;
}

/**
 * `*` any run of characters, `?` one (or, with `questionMark: 'literal'`, itself); everything else
 * literal. Matched without backtracking, each piece between stars at its leftmost place: time
 * linear in the name. The name is the client's (megabytes of it through the MCP gateway), or an
 * MCP server's, and `mcp__*__*delete*` as a regular expression on V8's backtracking engine took
 * time quadratic in it: seconds of stopped event loop per call.
 */
export function toolGlob(glob: string, opts: { questionMark?: 'one' | 'literal' } = {}): ToolGlob {
  const wild = opts.questionMark !== 'literal';
  const parts = glob.split('*');
  const first = parts[0]!;
  if (parts.length === 1) return { test: (s) => s.length === first.length && segmentAt(first, s, 0, wild) };
  const last = parts[parts.length - 1]!;
  const middle = parts.slice(1, -1).filter((p) => p !== '');
  return {
    test(s) {
      const end = s.length - last.length;
      if (end < first.length || !segmentAt(first, s, 0, wild) || !segmentAt(last, s, end, wild)) return false;
      let at = first.length;
      for (const seg of middle) {
        const i = findSegment(seg, s, at, end, wild);
        if (i < 0) return false;
        at = i + seg.length;
      }
      return true;
    },
  };
}

/** Which names a form of a rule's glob is tested against. */
type NameForm = 'any' | 'gemini' | 'copilot';

/**
 * The forms of a glob in Claude Code's MCP form, `mcp__<server>__<tool>` (or `mcp__<server>…`
 * with no tool part), in which each agent names the same tools, and the names each is tested on:
 *
 * - the glob as written, and as Claude Code writes a name (anything but letters, digits, `_` and
 *   `-` made `_`: a rule naming a tool `files.delete` matches its `mcp__srv__files_delete`);
 * - Codex's, which writes a `-` in a server's or tool's name as `_`;
 * - Gemini CLI's, `mcp_<server>_<tool>`, which keeps `.` and `:` where Claude Code writes `_`: so
 *   tested on the name with those made `_`. Gemini CLI adds no `mcp_` to a name that has it
 *   already (a server named `mcp_gh` or `mcp`), so that form too;
 * - Copilot CLI's, `<server>-<tool>`, with no prefix, tested only on names with a `-` that are in
 *   no other agent's MCP form: its own tools (`bash`, `edit`, `str_replace_editor`) have none, and
 *   a glob like `mcp__b*` must not become `b*` over them.
 *
 * Any other glob is only itself. (docs/governance.md#mcp-names)
 */
export function agentForms(glob: string): { glob: string; names: NameForm }[] {
  if (!glob.startsWith('mcp__')) return [{ glob, names: 'any' }];
  const rest = glob.slice('mcp__'.length);
  const sep = rest.indexOf('__');
  // Glob characters stay: they are the rule's, not a name's.
  const claude = (x: string): string => x.replace(/[^A-Za-z0-9_\-*?]/g, '_');
  const server = claude(sep < 0 ? rest : rest.slice(0, sep));
  const tool = sep < 0 ? undefined : claude(rest.slice(sep + 2));
  const join = (sv: string, between: string, t: string | undefined): string =>
    t === undefined ? sv : `${sv}${between}${t}`;
  const codex = (x: string): string => x.replace(/-/g, '_');
  const forms = new Map<string, NameForm>([
    [glob, 'any'],
    [`mcp__${join(server, '__', tool)}`, 'any'],
    [`mcp__${join(codex(server), '__', tool === undefined ? undefined : codex(tool))}`, 'any'],
  ]);
  const gemini = join(server, '_', tool);
  forms.set(`mcp_${gemini}`, 'gemini');
  if (gemini.startsWith('mcp_')) forms.set(gemini, 'gemini');
  if (!forms.has(join(server, '-', tool))) forms.set(join(server, '-', tool), 'copilot');
  return [...forms].map(([g, names]) => ({ glob: g, names }));
}

/** A rule's glob over tool names, in every agent's form of an MCP tool's name (agentForms). */
export function ruleToolGlob(glob: string): ToolGlob {
  const forms = agentForms(glob).map((f) => ({ names: f.names, tool: toolGlob(f.glob) }));
  if (forms.length === 1) return forms[0]!.tool;
  return {
    test(name) {
      for (const f of forms) {
        if (
          f.names === 'any'
            ? f.tool.test(name)
            : f.names === 'gemini'
              ? geminiName(name, f.tool)
              : copilotName(name, f.tool)
        )
          return true;
      }
      return false;
    },
  };
}

function geminiName(name: string, glob: ToolGlob): boolean {
  return name.startsWith('mcp_') && glob.test(name.replace(/[.:]/g, '_'));
}

function copilotName(name: string, glob: ToolGlob): boolean {
  return name.includes('-') && !name.startsWith('mcp_') && glob.test(name);
}

const FIELDS = new Set(['id', 'tool', 'argumentPattern', 'action', 'scope', 'subject', 'enabled']);

/** One rule of a body, checked field by field; `at` names it in the refusal (`rules[2]`). */
function validateRule(v: unknown, at: string): ToolPolicyRule {
  if (!isRecord(v)) refuse(at, 'must be an object');
  for (const k of Object.keys(v)) if (!FIELDS.has(k)) refuse(`${at}.${k}`, 'unknown field');
  const { id, tool, argumentPattern, action, scope, subject, enabled } = v;
  if (typeof id !== 'string' || !ID.test(id))
    refuse(`${at}.id`, 'must be 1-64 letters, digits or . _ : - (starting with a letter or digit)');
  if (typeof tool !== 'string' || tool.length === 0 || tool.length > 256)
    refuse(`${at}.tool`, 'must be a glob over tool names, 1-256 characters');
  if (action !== 'deny' && action !== 'audit') refuse(`${at}.action`, 'must be "deny" or "audit"');
  if (scope !== 'org' && scope !== 'team' && scope !== 'user')
    refuse(`${at}.scope`, 'must be "org", "team" or "user"');
  if (scope === 'org' && subject !== undefined) refuse(`${at}.subject`, 'an org rule has no subject');
  if (scope !== 'org' && (typeof subject !== 'string' || subject.length === 0 || subject.length > 256))
    refuse(
      `${at}.subject`,
      `a ${scope} rule needs its ${scope === 'team' ? 'team name' : "user's id or email"}`,
    );
  if (enabled !== undefined && typeof enabled !== 'boolean') refuse(`${at}.enabled`, 'must be true or false');
  if (argumentPattern !== undefined) {
    if (typeof argumentPattern !== 'string' || argumentPattern.length === 0)
      refuse(`${at}.argumentPattern`, 'must be a non-empty regular expression');
    if (argumentPattern.length > MAX_PATTERN)
      refuse(`${at}.argumentPattern`, `must be at most ${MAX_PATTERN} characters`);
    try {
      compileArgumentPattern(argumentPattern);
    } catch (err) {
      refuse(
        `${at}.argumentPattern`,
        `not a regular expression RE2 accepts (${(err as Error).message}); lookarounds and back-references are not supported`,
      );
    }
  }
  const rule: ToolPolicyRule = { id, tool, action, scope };
  if (argumentPattern !== undefined) rule.argumentPattern = argumentPattern as string;
  if (subject !== undefined)
    rule.subject = scope === 'user' ? (subject as string).toLowerCase() : (subject as string);
  if (enabled !== undefined) rule.enabled = enabled;
  return rule;
}

/** A body's `rules`, validated: refusals name the rule's index and field. */
export function validateRules(rules: unknown): ToolPolicyRule[] {
  if (!Array.isArray(rules)) refuse('rules', 'must be an array');
  if (rules.length > MAX_RULES) refuse('rules', `at most ${MAX_RULES} rules`);
  const seen = new Set<string>();
  return rules.map((r, i) => {
    const rule = validateRule(r, `rules[${i}]`);
    if (seen.has(rule.id)) refuse(`rules[${i}].id`, `"${rule.id}" is used by an earlier rule`);
    seen.add(rule.id);
    return rule;
  });
}

/** Compiles a rule set; `onStale` hears of each stored pattern RE2 cannot compile (MATCHES_ALL). */
export function compileRules(
  rules: readonly ToolPolicyRule[],
  onStale?: (rule: ToolPolicyRule, why: string) => void,
): CompiledRule[] {
  return rules.map((rule) => {
    let args: ArgumentPattern | null = null;
    if (rule.argumentPattern !== undefined) {
      try {
        args = compileArgumentPattern(rule.argumentPattern);
      } catch (err) {
        onStale?.(rule, (err as Error).message);
        args = MATCHES_ALL;
      }
    }
    return { rule, tool: ruleToolGlob(rule.tool), args };
  });
}

const SCOPE_ORDER = { org: 0, team: 1, user: 2 } as const;

/** The enabled rules for one caller: the org's, their team's and their own, in that order. */
export function rulesFor(rules: readonly CompiledRule[], who: Who): CompiledRule[] {
  const email = who.email.toLowerCase();
  return rules
    .filter(({ rule }) => {
      if (rule.enabled === false) return false;
      if (rule.scope === 'team') return who.team !== null && rule.subject === who.team;
      if (rule.scope === 'user') return rule.subject === who.userId.toLowerCase() || rule.subject === email;
      return true;
    })
    .sort((a, b) => SCOPE_ORDER[a.rule.scope] - SCOPE_ORDER[b.rule.scope]);
}

/**
 * A call's arguments as the text patterns are matched against; undefined when they cannot be
 * written as JSON (nested past what JSON.stringify's stack takes, ~5,000 levels from a model).
 */
export function argumentText(input: unknown): string | undefined {
  if (typeof input === 'string') return input;
  try {
    return JSON.stringify(input) ?? '';
  } catch {
    return undefined;
  }
}

/**
 * The texts a call's argument patterns are matched against (docs/governance.md#what-patterns-see);
 * undefined when the arguments cannot be read (no JSON text, or past ARGUMENT_SEARCH_LIMIT), which
 * every pattern is taken to match. First the arguments as JSON text (or as sent, when they are no
 * JSON); then the command they stand for: every string in them joined by spaces (an argv such as
 * Codex's `["rm","-rf","/"]`), JSON escapes decoded in text that is no JSON (`\u0072m`, which a
 * lenient client decodes to `rm`), quotes dropped and runs of whitespace made one space (a tab or
 * newline in a command is `\t` or `\n` in JSON text, where `\s` never sees it).
 */
export function argumentViews(input: unknown): string[] | undefined {
  const text = argumentText(input);
  if (text === undefined || text.length > ARGUMENT_SEARCH_LIMIT) return undefined;
  const strings: string[] = [];
  if (typeof input === 'string') strings.push(decodeEscapes(input));
  else stringsIn(input, strings);
  const command = strings.join(' ').replace(QUOTES, '').replace(SPACES, ' ');
  return command === text ? [text] : [text, command];
}

const QUOTES = /["'`]/g;
const SPACES = /\s+/g;
const ESCAPE = /\\(?:u([0-9a-fA-F]{4})|(["\\/bfnrt]))/g;
const ESCAPED: Record<string, string> = { b: '\b', f: '\f', n: '\n', r: '\r', t: '\t' };

/** JSON's string escapes decoded wherever they are in `raw` (text that is no JSON as a whole). */
function decodeEscapes(raw: string): string {
  if (!raw.includes('\\')) return raw;
  return raw.replace(ESCAPE, (_m, hex: string | undefined, c: string | undefined) =>
    hex !== undefined ? String.fromCharCode(Number.parseInt(hex, 16)) : (ESCAPED[c!] ?? c!),
  );
}

/** Every string in a JSON value, in order, keys left out; no recursion (a model's nesting is deep). */
function stringsIn(value: unknown, out: string[]): void {
  const stack: unknown[] = [value];
  while (stack.length > 0) {
    const v = stack.pop();
    if (typeof v === 'string') out.push(v);
    else if (Array.isArray(v)) for (let i = v.length - 1; i >= 0; i--) stack.push(v[i]);
    else if (isRecord(v)) {
      const vals = Object.values(v);
      for (let i = vals.length - 1; i >= 0; i--) stack.push(vals[i]);
    }
  }
}

/**
 * Whether `pattern` occurs in any of the arguments' texts; for arguments that cannot be read,
 * taken to. Read as "no match", arguments nested 10,000 levels deep beside `rm -rf /` passed every
 * deny rule with a pattern.
 */
function argumentsMatch(pattern: ArgumentPattern, views: string[] | undefined): boolean {
  return views === undefined || views.some((t) => pattern.test(t));
}

/**
 * What the rules say of one call: the first deny rule that matches wins over any audit rule (a
 * call that is blocked is not also "allowed and flagged"); otherwise the first audit rule.
 */
export function decide(
  rules: readonly CompiledRule[],
  name: string,
  input: unknown,
  only?: 'deny',
): ToolPolicyMark | undefined {
  let views: string[] | undefined | null = null;
  let flagged: ToolPolicyMark | undefined;
  for (const r of rules) {
    if (only && r.rule.action !== only) continue;
    if (flagged && r.rule.action === 'audit') continue;
    if (!r.tool.test(name)) continue;
    if (r.args) {
      if (views === null) views = argumentViews(input);
      if (!argumentsMatch(r.args, views)) continue;
    }
    if (r.rule.action === 'deny') return { rule: r.rule.id, action: 'deny' };
    flagged = { rule: r.rule.id, action: 'audit' };
  }
  return flagged;
}

/**
 * The rules over one call that goes by several names (the MCP gateway's and the bridge's injected
 * tools, server/policy/tool-policy.ts): a deny under any name wins, else the first name flagged.
 */
export function decideAny(
  rules: readonly CompiledRule[],
  names: readonly string[],
  input: unknown,
): ToolPolicyMark | undefined {
  let mark: ToolPolicyMark | undefined;
  for (const n of names) {
    const m = decide(rules, n, input);
    if (m?.action === 'deny') return m;
    mark ??= m;
  }
  return mark;
}

/**
 * Every name an MCP server's tool goes by, so one rule covers each way in: the gateway's
 * (`<server>__<tool>`), an agent's configured with the server directly (`mcp__<server>__<tool>`,
 * Claude Code's) and, for a tool the bridge injected, the name the model saw (`aibridge__…`).
 */
export function mcpToolNames(server: string, tool: string, offered?: string): string[] {
  const names = [`${server}__${tool}`, `mcp__${server}__${tool}`];
  return offered && !names.includes(offered) ? [offered, ...names] : names;
}
