/**
 * The exports of a CommonJS package loaded with `await import(...)`. Run from sources, Node gives
 * them as named exports and as `default`; in the built bundle (ES module chunks, see
 * scripts/server-bundle.mjs) a CommonJS package loaded on first use is a chunk whose only export
 * is `default`. Either way `default` is the package's `module.exports`; an ES module package has
 * none, and its namespace is returned as is.
 */
export async function commonJs<T extends object>(loading: Promise<T>): Promise<T> {
  const ns = (await loading) as T & { default?: unknown };
  const exported = ns.default;
  return exported !== null && (typeof exported === 'object' || typeof exported === 'function')
    ? (exported as T)
    : ns;
}
