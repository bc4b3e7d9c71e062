// The ES module build: the package's main is a UMD wrapper whose requires the bundle cannot follow.
import { visit } from 'jsonc-parser/lib/esm/main.js';

/**
 * The first object key a JSON text names twice in one object, with its path (`providers.eu`) and
 * line; undefined when none is. JSON.parse keeps the last of them silently, which in a config file
 * drops whatever the first one set.
 */
export function duplicateKey(text: string): { path: string; line: number } | undefined {
  const open: Set<string>[] = [];
  let found: { path: string; line: number } | undefined;
  visit(text, {
    onObjectBegin: () => {
      open.push(new Set());
    },
    onObjectEnd: () => {
      open.pop();
    },
    onObjectProperty: (name, _offset, _length, startLine, _startCharacter, pathSupplier) => {
      const seen = open.at(-1);
      if (found || !seen) return;
      if (seen.has(name)) found = { path: [...pathSupplier(), name].join('.'), line: startLine + 1 };
      else seen.add(name);
    },
  });
  return found;
}
