import { patternProblem } from './pattern-guard';

/** Levels of objects and arrays a redacted value keeps (AIBRIDGE_MAX_JSON_DEPTH's default). */
export const VALUE_DEPTH = 128;
/** What a redacted value keeps in place of a container nested deeper than VALUE_DEPTH. */
export const NESTED_TOO_DEEP = `[nested deeper than ${VALUE_DEPTH} levels]`;

/** A kind of secret the redactor knows, and how to find it. `group` names the part to blank out. */
interface Rule {
  kind: string;
  re: RegExp;
  /** Capture group holding the secret; 0 (the whole match) when absent. */
  group?: number;
}

/** Where a secret was found: never its value. */
export interface Redaction {
  kind: string;
  /** The record field, e.g. `prompt`, `toolCalls[2].input`. */
  field: string;
  count: number;
}

/*
 * Every rule runs in time linear in the text (docs/audit.md): the text is a member's choice, and a
 * pattern that backtracks over a run of look-alike characters holds the event loop for seconds.
 * So a rule either ends in an unbounded run with nothing after it that can fail (`{20,}` at the
 * end), or bounds its repetitions, or starts with a lookbehind that lets a match begin only where
 * a run of its characters begins (`(?<![\w+.-])`), so no character is scanned from many starts.
 */
export const SECRET_RULES: readonly Rule[] = [
  {
    kind: 'private_key',
    re: /-----BEGIN [A-Z0-9 ]{0,64}PRIVATE KEY-----[\s\S]*?(?:-----END [A-Z0-9 ]{0,64}PRIVATE KEY-----|$)/g,
  },
  // After and before `_` too (every token rule below): Claude Code's `metadata.user_id` glues values with
  // underscores, and a tool call's id or a shell word can be glued to a key (`toolu_<key>`,
  // `-uAIBRIDGE_<key>`).
  { kind: 'anthropic_key', re: /(?<![A-Za-z0-9])sk-ant-[A-Za-z0-9_-]{20,}/g },
  {
    kind: 'openai_key',
    re: /(?<![A-Za-z0-9])sk-(?:proj-|svcacct-|admin-)[A-Za-z0-9_-]{20,}|(?<![A-Za-z0-9])sk-[A-Za-z0-9]{20}T3BlbkFJ[A-Za-z0-9]{20}(?![A-Za-z0-9])|(?<![A-Za-z0-9])sk-[A-Za-z0-9]{48}(?![A-Za-z0-9])/g,
  },
  { kind: 'bridge_key', re: /(?<![A-Za-z0-9])aib_[A-Za-z0-9_-]{43}(?![A-Za-z0-9])/g },
  { kind: 'aws_access_key_id', re: /(?<![A-Za-z0-9])(?:AKIA|ASIA|ABIA|ACCA)[0-9A-Z]{16}(?![A-Za-z0-9])/g },
  {
    kind: 'aws_secret_access_key',
    re: /\baws_?(?:secret)?_?(?:access)?_?key(?:_id)?["']?\s{0,16}[:=]\s{0,16}["']?([A-Za-z0-9/+=]{40})(?![A-Za-z0-9/+=])/gi,
    group: 1,
  },
  { kind: 'gcp_api_key', re: /(?<![A-Za-z0-9])AIza[0-9A-Za-z_-]{35}(?![A-Za-z0-9])/g },
  {
    kind: 'github_token',
    re: /(?<![A-Za-z0-9])(?:gh[pousr]_[A-Za-z0-9]{36,}|github_pat_[A-Za-z0-9_]{50,})(?![A-Za-z0-9])/g,
  },
  { kind: 'slack_token', re: /(?<![A-Za-z0-9])xox[abposr]-[A-Za-z0-9-]{10,}(?![A-Za-z0-9-])/g },
  { kind: 'stripe_key', re: /(?<![A-Za-z0-9])[rs]k_live_[A-Za-z0-9]{20,}(?![A-Za-z0-9])/g },
  { kind: 'jwt', re: /(?<![\w-])eyJ[A-Za-z0-9_-]{10,}\.eyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}/g },
  // scheme://user:password@host: only the password goes.
  {
    kind: 'url_password',
    re: /(?<![\w+.-])[a-z][a-z0-9+.-]*:\/\/[^\s:/@]+:([^\s@/]{3,})@[^\s/]/gi,
    group: 1,
  },
  // KEY=value lines of .env files and shells, for names that say they hold a secret. The name is
  // at most 128 characters, and the lookahead looks for the secret word only within it.
  {
    kind: 'env_secret',
    re: /^[ \t]{0,64}(?:export[ \t]{1,16})?(?=[A-Za-z0-9_]{0,127}?(?:SECRET|TOKEN|PASSWORD|PASSWD|PWD|API_?KEY|PRIVATE_?KEY|ACCESS_?KEY|CREDENTIALS?))[A-Za-z_][A-Za-z0-9_]{0,127}[ \t]{0,16}=[ \t]{0,16}["']?((?!\$\{?[A-Za-z_])(?!<)(?!your)(?!changeme)(?!xxx)[^\s"'#]{6,})/gim,
    group: 1,
  },
  // The same assignments inside a command line, as agents run them: `cd app && DB_PASSWORD=… npm
  // start`, `docker run -e API_KEY=…`, `env GITHUB_TOKEN=… gh …`, and so are flags and query
  // parameters (`--password=…`, `?api_key=…`). Written as a shell does, with no space around `=`; a
  // match starts only after a space, a shell separator, a quote, `-` or `?`. A number alone is kept
  // (`max_tokens=100000` in a call's arguments).
  {
    kind: 'env_secret',
    re: /(?<=[\s;&|`"'?-])(?=[A-Za-z0-9_]{0,127}?(?:SECRET|TOKEN|PASSWORD|PASSWD|PWD|API_?KEY|PRIVATE_?KEY|ACCESS_?KEY|CREDENTIALS?))[A-Za-z_][A-Za-z0-9_]{0,127}=["']?((?!\$\{?[A-Za-z_])(?!\d+\b)(?!<)(?!your)(?!changeme)(?!xxx)[^\s"'#;&|`]{6,})/gi,
    group: 1,
  },
  // Settings in JSON and YAML (a config file read into a prompt or a tool's result) whose key ends
  // in a secret word: `"password": "…"`, `"apiKey": "…"`, `  client_secret: …`. The key must end in
  // the word (`token_type`, `tokenizer`, `max_tokens` are kept), a JSON key be quoted and a YAML
  // key begin its line (so prose such as `your token: expires` is kept); a number alone is kept.
  {
    kind: 'config_secret',
    re: /(?<=["'])(?=[A-Za-z0-9_-]{0,127}?(?:SECRET|TOKEN|PASSWORD|PASSWD|PWD|API_?KEY|PRIVATE_?KEY|ACCESS_?KEY|CREDENTIALS?)["'])[A-Za-z0-9_-]{1,128}["'][ \t]{0,16}:[ \t]{0,16}["']((?!\$\{?[A-Za-z_])(?!\d+\b)(?!<)(?!your)(?!changeme)(?!xxx)[^\s"']{6,})/gi,
    group: 1,
  },
  // The same keys in a mapping written on one line, after `{` or `,`: YAML's flow style (`db: {user:
  // app, password: …}`) and unquoted keys in code. A value that names something rather than holding
  // it is kept: a dotted name (`process.env.DB_PASSWORD`, `config.apiKey`) or a call (`getToken()`).
  {
    kind: 'config_secret',
    re: /(?<=[{,][ \t]{0,16})(?=[A-Za-z0-9_-]{0,127}?(?:SECRET|TOKEN|PASSWORD|PASSWD|PWD|API_?KEY|PRIVATE_?KEY|ACCESS_?KEY|CREDENTIALS?):)[A-Za-z0-9_-]{1,128}:[ \t]{1,16}["']?((?!\$\{?[A-Za-z_])(?!\d+(?:[\s,}]|$))(?!<)(?!your)(?!changeme)(?!xxx)(?![A-Za-z_$][\w$]*\.[\w$.]*[A-Za-z_$\d](?:[\s,}"']|$))[^\s"',{}()[\]]{6,})(?=[\s,}"']|$)/gi,
    group: 1,
  },
  {
    kind: 'config_secret',
    re: /^[ \t]{0,64}(?:-[ \t]{1,8})?(?=[A-Za-z0-9_-]{0,127}?(?:SECRET|TOKEN|PASSWORD|PASSWD|PWD|API_?KEY|PRIVATE_?KEY|ACCESS_?KEY|CREDENTIALS?):)[A-Za-z0-9_-]{1,128}:[ \t]{1,16}["']?((?!\$\{?[A-Za-z_])(?!\d+\b)(?!<)(?!your)(?!changeme)(?!xxx)[^\s"'#]{6,})/gim,
    group: 1,
  },
  // Passwords given to command-line clients as arguments, which no name marks as secret: MySQL's
  // and MariaDB's `-pSECRET` (glued: `-p db` asks for one and names a database), `sshpass -p …`,
  // and `--password …` with a space. The client's name starts the command; what lies between it
  // and the flag is bounded, so no character is scanned from more than one start.
  {
    kind: 'cli_password',
    re: /(?<![\w.-])(?:mysql|mysqldump|mysqladmin|mysqlimport|mysqlsh|mariadb|mariadb-dump)[ \t][^\n|;&]{0,256}?(?<=[ \t])-p["']?((?!\$\{?[A-Za-z_])[^\s"'-][^\s"']{2,})/g,
    group: 1,
  },
  {
    kind: 'cli_password',
    re: /(?<![\w.-])sshpass[ \t]{1,16}-p[ \t]{0,16}["']?((?!\$\{?[A-Za-z_])[^\s"'-][^\s"']{2,})/g,
    group: 1,
  },
  {
    kind: 'cli_password',
    re: /(?<![\w-])--password[ \t]{1,16}["']?((?!\$\{?[A-Za-z_])(?!<)(?!your)(?!changeme)(?!xxx)[^\s"'-][^\s"']{5,})/gi,
    group: 1,
  },
  // Credentials in HTTP headers written out in commands and code (`curl -H "Authorization: Bearer
  // …"`, `x-api-key: …`): only the value goes. Keys the rules above know keep their own kind.
  {
    kind: 'auth_header',
    re: /(?<![\w-])(?:proxy-)?authorization["']?[ \t]{0,16}[:=][ \t]{0,16}["']?(?:bearer|basic|token|bot)[ \t]{1,16}([A-Za-z0-9._~+/=-]{8,})/gi,
    group: 1,
  },
  {
    kind: 'auth_header',
    re: /(?<![\w-])(?:x-)?(?:api-key|auth-token|access-token)["']?[ \t]{0,16}:[ \t]{0,16}["']?([A-Za-z0-9._~+/=-]{16,})/gi,
    group: 1,
  },
];

export const REDACTED = (kind: string): string => `[REDACTED:${kind}]`;

/**
 * A literal every built-in rule's match contains (`sk-`, `eyJ`, `://`, `=`...), case aside: a text
 * without any holds no built-in kind of secret, and most prompts are checked by this one scan
 * instead of twenty-one. test/server/redaction.test.ts checks it against every rule.
 */
const SECRET_CUE =
  /-----BEGIN |sk-|aib_|AKIA|ASIA|ABIA|ACCA|aws|AIza|gh[pousr]_|github_pat_|xox|k_live_|eyJ|:\/\/|=|authorization|api-key|auth-token|access-token|mysql|mariadb|sshpass|--password|(?:secret|token|passwd|password|pwd|key|credentials?)["']?[ \t]{0,16}:/i;

/** Whether a built-in rule could match `s` (false: none can). */
export function mayHoldSecret(s: string): boolean {
  return SECRET_CUE.test(s);
}

/** A JSON string escape: what can hide a secret from the rules (`\n` before an `.env` line, `\/` in a URL). */
const JSON_ESCAPE = /\\(?:[nrtbf"/\\]|u[0-9A-Fa-f]{4})/;

/**
 * The text with its JSON string escapes read (a backslash not starting one is kept), and where in
 * the given text each character of the result starts (`at[text.length]` is the given length).
 * Linear in the text.
 */
function unescapeJson(s: string): { text: string; at: number[] } {
  const parts: string[] = [];
  const at: number[] = [];
  let i = 0;
  while (i < s.length) {
    const slash = s.indexOf('\\', i);
    const stop = slash < 0 ? s.length : slash;
    if (stop > i) {
      parts.push(s.slice(i, stop));
      for (let j = i; j < stop; j++) at.push(j);
      i = stop;
      continue;
    }
    const c = s[i + 1];
    let ch: string | undefined = c === undefined ? undefined : SIMPLE_ESCAPES[c];
    let len = 2;
    if (c === 'u' && /^[0-9A-Fa-f]{4}$/.test(s.slice(i + 2, i + 6))) {
      ch = String.fromCharCode(Number.parseInt(s.slice(i + 2, i + 6), 16));
      len = 6;
    }
    if (ch === undefined) {
      ch = '\\';
      len = 1;
    }
    parts.push(ch);
    at.push(i);
    i += len;
  }
  at.push(s.length);
  return { text: parts.join(''), at };
}

const SIMPLE_ESCAPES: Readonly<Record<string, string>> = {
  n: '\n',
  r: '\r',
  t: '\t',
  b: '\b',
  f: '\f',
  '"': '"',
  '/': '/',
  '\\': '\\',
};

/**
 * Blanks out secrets in text before anything is stored: provider and bridge keys, cloud keys,
 * private keys, JWTs, passwords in URLs, secret-looking `.env` assignments, plus the admin's own
 * patterns. Returns what kinds it found, never the values.
 */
export class Redactor {
  private readonly rules: Rule[];
  /** The admin's own patterns alone: what a text without SECRET_CUE still goes through. */
  private readonly custom: Rule[];

  /** `extraPatterns` must pass `patternProblem` (config.ts checks them at start). */
  constructor(extraPatterns: string[] = []) {
    this.custom = extraPatterns.map((p, i) => {
      const problem = patternProblem(p);
      if (problem) throw new Error(`redaction pattern ${i + 1} ${problem}`);
      return { kind: `custom_${i + 1}`, re: new RegExp(p, 'g') };
    });
    this.rules = [...SECRET_RULES, ...this.custom];
  }

  /**
   * Redacts one string; adds what it found to `found` under `field`. A text holding JSON string
   * escapes (a tool's JSON answer, arguments a model left unparseable) is also searched as it
   * reads unescaped, so a secret behind `\n`, `\/` or `\u002d` is found; only the secret's
   * span of the text is replaced, the rest stays as it was sent.
   */
  text(s: string, field: string, found: Redaction[]): string {
    const out = this.plain(s, field, found);
    return JSON_ESCAPE.test(out) ? this.escaped(out, field, found) : out;
  }

  /** The rules run over the text as it reads unescaped; each secret's span replaced in `s`. */
  private escaped(s: string, field: string, found: Redaction[]): string {
    const { text, at } = unescapeJson(s);
    const rules = mayHoldSecret(text) ? this.spanRules() : this.spanRules().slice(SECRET_RULES.length);
    const spans: { start: number; end: number; kind: string }[] = [];
    for (const rule of rules) {
      rule.re.lastIndex = 0;
      for (const m of text.matchAll(rule.re)) {
        const where = m.indices?.[rule.group ?? 0];
        if (where) spans.push({ start: at[where[0]]!, end: at[where[1]]!, kind: rule.kind });
      }
    }
    if (spans.length === 0) return s;
    spans.sort((a, b) => a.start - b.start);
    let out = '';
    let from = 0;
    for (const span of spans) {
      // Overlapping finds (two rules over one secret): the first one replaces it.
      if (span.start < from || span.end <= span.start) continue;
      out += s.slice(from, span.start) + REDACTED(span.kind);
      from = span.end;
      const prev = found.find((f) => f.kind === span.kind && f.field === field);
      if (prev) prev.count += 1;
      else found.push({ kind: span.kind, field, count: 1 });
    }
    return out + s.slice(from);
  }

  /** The rules with match indices (the `d` flag), built on first use. */
  private spanRulesCache: Rule[] | undefined;
  private spanRules(): Rule[] {
    this.spanRulesCache ??= this.rules.map((r) => ({ ...r, re: new RegExp(r.re.source, `${r.re.flags}d`) }));
    return this.spanRulesCache;
  }

  private plain(s: string, field: string, found: Redaction[]): string {
    let out = s;
    for (const rule of mayHoldSecret(s) ? this.rules : this.custom) {
      rule.re.lastIndex = 0;
      if (!rule.re.test(out)) continue;
      rule.re.lastIndex = 0;
      let count = 0;
      out = out.replace(rule.re, (match: string, ...groups: unknown[]) => {
        count++;
        if (!rule.group) return REDACTED(rule.kind);
        const secret = groups[rule.group - 1];
        return typeof secret === 'string' ? match.replace(secret, REDACTED(rule.kind)) : REDACTED(rule.kind);
      });
      if (count > 0) {
        const prev = found.find((f) => f.kind === rule.kind && f.field === field);
        if (prev) prev.count += count;
        else found.push({ kind: rule.kind, field, count });
      }
    }
    return out;
  }

  /**
   * Redacts every string inside a JSON value (tool inputs and results), keeping its shape down to
   * VALUE_DEPTH levels; a container below that is kept as NESTED_TOO_DEEP. A model's tool arguments
   * are not bounded as request bodies are (AIBRIDGE_MAX_JSON_DEPTH), and 2,000 levels of `[`
   * overflowed the stack here, so the request was served with no record and no spend.
   */
  value(v: unknown, field: string, found: Redaction[], depth = 0): unknown {
    if (typeof v === 'string') return this.text(v, field, found);
    if (v === null || typeof v !== 'object') return v;
    if (depth >= VALUE_DEPTH) return NESTED_TOO_DEEP;
    if (Array.isArray(v)) return v.map((x) => this.value(x, field, found, depth + 1));
    // fromEntries defines each key as its own: assigning `out['__proto__']` would set the copy's
    // prototype instead, and a model's argument of that name would be missing from the record.
    return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, this.value(x, field, found, depth + 1)]));
  }
}
