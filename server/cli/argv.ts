/** The commands `main` knows, and those that take a subcommand after them. */
const COMMANDS: ReadonlySet<string> = new Set([
  'serve',
  'users',
  'keys',
  'audit',
  'login',
  'env',
  'migrate',
  'store',
  'help',
]);
const WITH_SUB: ReadonlySet<string> = new Set(['users', 'keys', 'audit', 'store']);

/**
 * `aibridge --admin-key K users list` as `aibridge users list --admin-key K`: flags given before
 * the command are the command's (as git and kubectl read them), not an unknown command.
 */
export function commandFirst(argv: readonly string[]): string[] {
  if (argv.length === 0 || !argv[0]!.startsWith('-')) return [...argv];
  const i = argv.findIndex(
    (a, j) => COMMANDS.has(a) && (j === 0 || !argv[j - 1]!.startsWith('--') || argv[j - 1]!.includes('=')),
  );
  if (i === -1) return [...argv];
  const head = WITH_SUB.has(argv[i]!) && argv[i + 1] !== undefined && !argv[i + 1]!.startsWith('-') ? 2 : 1;
  return [...argv.slice(i, i + head), ...argv.slice(0, i), ...argv.slice(i + head)];
}
