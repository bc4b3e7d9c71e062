import type * as vscode from 'vscode';

const LEVELS = new Set(['trace', 'debug', 'info', 'warn', 'error', 'appendLine']);

/**
 * The output channel with every message kept to one line: what it logs carries the bridge's and
 * the model's words (a tool call's summary, a rule, a sign-out reason, an error message), and a
 * newline in them would write a line that looks like the extension's own (a forged "signed in").
 */
export function oneLineLog(channel: vscode.LogOutputChannel): vscode.LogOutputChannel {
  return new Proxy(channel, {
    // Read and called on the channel itself, not the proxy: its methods and getters may rely on
    // their own `this` (private state).
    get(target, prop) {
      const v = Reflect.get(target, prop, target) as unknown;
      if (typeof v !== 'function') return v;
      if (typeof prop !== 'string' || !LEVELS.has(prop))
        return (v as (...a: unknown[]) => unknown).bind(target);
      return (message: unknown, ...rest: unknown[]) =>
        (v as (...a: unknown[]) => void).call(
          target,
          typeof message === 'string' ? oneLine(message) : message,
          ...rest,
        );
    },
  });
}

/** Line breaks and other control characters shown as `⏎` and spaces: one line, still readable. */
export function oneLine(s: string): string {
  // biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what it replaces
  return s.replace(/\r\n|[\r\n\u2028\u2029]/g, ' ⏎ ').replace(/[\u0000-\u0008\u000b-\u001f\u007f]/g, ' ');
}
