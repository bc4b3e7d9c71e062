/**
 * The layering docs/architecture.md ("Layers and rules") describes, as rules the build checks
 * (`npm run depcheck`, part of `npm run lint`). A rule here is the only way a layer's promise
 * stays true once several people change the code at once.
 */
/** Node's own modules, which no "only imports" rule below is about. */
const NODE_BUILTIN = ['core'];

module.exports = {
  forbidden: [
    {
      name: 'no-circular',
      comment: 'A file cycle means neither file can be understood, tested or moved without the other.',
      severity: 'error',
      from: {},
      to: { circular: true },
    },
    {
      name: 'no-folder-cycle',
      comment:
        'Folders are layers: a folder that imports a folder that imports it back has no place in the picture.',
      severity: 'error',
      scope: 'folder',
      from: {},
      to: { circular: true },
    },
    {
      name: 'shared-is-a-leaf',
      comment:
        'shared/ is the wire contract the server, the extension and the admin page all read: it imports none of them, and no package.',
      severity: 'error',
      from: { path: '^shared/' },
      to: { pathNot: '^shared/' },
    },
    {
      name: 'clients-reach-the-server-over-the-wire',
      comment:
        'The extension and the admin page talk to the bridge over HTTP and WebSocket only; they may share types through shared/.',
      severity: 'error',
      from: { path: '^(extension|admin)/' },
      to: { path: '^server/' },
    },
    {
      name: 'core-is-a-leaf',
      comment:
        'server/core/ holds the types and pure functions every layer shares (facts, principal, rollups, chain hashing): it imports only shared/ and Node.',
      severity: 'error',
      from: { path: '^server/core/' },
      to: { pathNot: '^(shared|server/core)/', dependencyTypesNot: NODE_BUILTIN },
    },
    {
      name: 'store-knows-no-http',
      comment:
        'server/store/ persists; it knows no request, provider, route or policy. It imports shared/, server/core/, the error registry, the config type and its drivers (pg, lowdb).',
      severity: 'error',
      from: { path: '^server/store/' },
      to: {
        pathNot: [
          '^(shared|server/core|server/store)/',
          '^server/(errors|config)\\.ts$',
          '(^|/)node_modules/(pg|lowdb)/',
          '^lowdb$',
        ],
        dependencyTypesNot: NODE_BUILTIN,
      },
    },
    {
      name: 'store-opens-no-sockets-but-its-database',
      comment: 'No HTTP from the store, not even through Node.',
      severity: 'error',
      from: { path: '^server/store/' },
      to: { path: '^(http|https|http2|node:http|node:https|node:http2)$' },
    },
    {
      name: 'providers-are-pure-wire-formats',
      comment:
        'A provider adapter reads and rewrites its wire format; it stores, records, prices and admits nothing, so it imports only shared/, server/core/ and providers/ (and the npm packages that speak a wire: an HTTP client, a cloud signer, a stream codec).',
      severity: 'error',
      from: { path: '^server/providers/' },
      to: {
        pathNot: '^(shared|server/core|server/providers)/',
        dependencyTypesNot: [...NODE_BUILTIN, 'npm'],
      },
    },
    {
      name: 'metrics-is-a-sink',
      comment:
        'Metrics are counted by whoever sees the fact; metrics.ts never reaches back into the recorder, the store or anything that writes (its own series, server/labelled-series.ts, are a leaf like prom-client).',
      severity: 'error',
      from: { path: '^server/metrics\\.ts$' },
      to: {
        pathNot: [
          '^shared/',
          '^server/providers/',
          '^server/labelled-series\\.ts$',
          '(^|/)node_modules/prom-client/',
        ],
        dependencyTypesNot: NODE_BUILTIN,
      },
    },
    {
      name: 'no-orphans',
      comment: 'A file nothing imports (and that imports nothing) is dead code or a missing entry point.',
      severity: 'error',
      from: { orphan: true, pathNot: ['\\.d\\.ts$'] },
      to: {},
    },
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.json' },
    exclude: { path: '(^|/)dist/' },
  },
};
