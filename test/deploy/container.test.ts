import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { validate as lintDockerfile, ValidationSeverity } from 'dockerfile-utils';
import { Deployment } from 'kubernetes-models/apps/v1';
import { PodDisruptionBudget } from 'kubernetes-models/policy/v1';
import { Namespace, Secret, Service } from 'kubernetes-models/v1';
import { parseAllDocuments } from 'yaml';
import { ENV_VARS } from '../../server/config';
import { startBridge, type TestBridge } from '../helpers/bridge';
import { tempDirSync } from '../helpers/temp-dirs';

const ROOT = path.resolve(import.meta.dirname, '../..');
const K8S = path.join(ROOT, 'deploy/kubernetes');

type Manifest = { apiVersion: string; kind: string; metadata?: { name?: string } } & Record<string, unknown>;

/** Each kind the manifests use, by `apiVersion/kind`, with its JSON-schema check. */
const MODELS: Record<string, (m: Manifest) => void> = {
  'v1/Namespace': (m) => new Namespace(m as never).validate(),
  'v1/Secret': (m) => new Secret(m as never).validate(),
  'v1/Service': (m) => new Service(m as never).validate(),
  'apps/v1/Deployment': (m) => new Deployment(m as never).validate(),
  'policy/v1/PodDisruptionBudget': (m) => new PodDisruptionBudget(m as never).validate(),
};

function kustomizedManifests(): Manifest[] {
  const k = parseAllDocuments(fs.readFileSync(path.join(K8S, 'kustomization.yaml'), 'utf8'))[0]!.toJS() as {
    resources: string[];
  };
  return k.resources.flatMap((file) =>
    parseAllDocuments(fs.readFileSync(path.join(K8S, file), 'utf8')).map((d) => {
      assert.deepEqual(d.errors, [], `${file} parses`);
      return d.toJS() as Manifest;
    }),
  );
}

function deployment(): {
  spec: {
    template: {
      spec: {
        containers: {
          env: { name: string }[];
          readinessProbe: { httpGet: { path: string } };
          livenessProbe: { httpGet: { path: string } };
          startupProbe: { httpGet: { path: string } };
          securityContext: { allowPrivilegeEscalation: boolean };
        }[];
        securityContext: { runAsNonRoot: boolean };
      };
    };
  };
} {
  return kustomizedManifests().find((m) => m.kind === 'Deployment') as never;
}

describe('container image and Kubernetes manifests', () => {
  let tb: TestBridge;
  before(async () => {
    tb = await startBridge('http://127.0.0.1:9');
  });
  after(() => tb.close());

  it('every manifest kustomization.yaml lists validates against the Kubernetes schema of its kind', () => {
    const manifests = kustomizedManifests();
    assert.deepEqual(manifests.map((m) => m.kind).sort(), [
      'Deployment',
      'Namespace',
      'PodDisruptionBudget',
      'Secret',
      'Service',
    ]);
    for (const m of manifests) {
      const check = MODELS[`${m.apiVersion}/${m.kind}`];
      assert.ok(check, `no schema for ${m.apiVersion}/${m.kind}`);
      check(m);
    }
  });

  it('the schema check catches a wrong field type (it is not a no-op)', () => {
    const d = kustomizedManifests().find((m) => m.kind === 'Deployment')!;
    const broken = structuredClone(d) as unknown as { spec: { replicas: unknown } };
    broken.spec.replicas = 'three';
    assert.throws(() => MODELS['apps/v1/Deployment']!(broken as never));
  });

  it('the Deployment and Secret set only variables the bridge reads, and run as non-root', () => {
    const known = new Set<string>(ENV_VARS);
    const d = deployment();
    const container = d.spec.template.spec.containers[0]!;
    const secret = kustomizedManifests().find((m) => m.kind === 'Secret') as unknown as {
      stringData: Record<string, string>;
    };
    for (const name of [...container.env.map((e) => e.name), ...Object.keys(secret.stringData)])
      assert.ok(known.has(name), `${name} is not a variable the bridge reads (server/config.ts ENV_VARS)`);
    assert.equal(d.spec.template.spec.securityContext.runAsNonRoot, true);
    assert.equal(container.securityContext.allowPrivilegeEscalation, false);
  });

  it('the probes the manifests and the image use answer on a running bridge without credentials', async () => {
    const c = deployment().spec.template.spec.containers[0]!;
    const docker = fs.readFileSync(path.join(ROOT, 'Dockerfile'), 'utf8');
    const healthcheck = /HEALTHCHECK[\s\S]*?(\/readyz|\/healthz)/.exec(docker)?.[1];
    assert.equal(healthcheck, '/readyz');
    for (const p of [
      c.readinessProbe.httpGet.path,
      c.livenessProbe.httpGet.path,
      c.startupProbe.httpGet.path,
      healthcheck,
    ]) {
      const res = await fetch(`${tb.url}${p}`);
      assert.equal(res.status, 200, `${p} answers 200`);
    }
  });

  it('the Dockerfile lints clean, is multi-stage, runs as a non-root user and copies what the build writes', () => {
    const docker = fs.readFileSync(path.join(ROOT, 'Dockerfile'), 'utf8');
    const problems = lintDockerfile(docker).filter(
      (d) => d.severity === ValidationSeverity.ERROR || d.severity === ValidationSeverity.WARNING,
    );
    assert.deepEqual(
      problems.map((p) => `${p.range.start.line + 1}: ${p.message}`),
      [],
    );
    assert.ok((docker.match(/^FROM /gm) ?? []).length >= 2, 'multi-stage');
    const user = /^USER (\S+)/m.exec(docker)?.[1];
    assert.ok(user && user !== 'root' && user !== '0', 'a non-root USER');
    assert.match(docker, /ENTRYPOINT \["node", "\/opt\/aibridge\/dist\/aibridge\.cjs"\]/);
  });

  it("the image's files alone (the Dockerfile's COPY lines, no node_modules) serve the API and the admin page", async function () {
    this.timeout(60_000);
    const docker = fs.readFileSync(path.join(ROOT, 'Dockerfile'), 'utf8');
    const finalStage = docker.slice(docker.lastIndexOf('\nFROM '));
    const image = tempDirSync('aibridge-image-');
    for (const m of finalStage.matchAll(/^COPY --from=build (.+)$/gm)) {
      const args = m[1]!.trim().split(/\s+/);
      const dest = path.join(image, args.pop()!);
      for (const src of args) {
        const from = path.join(ROOT, src.replace(/^\/src\//, ''));
        const to = dest.endsWith(path.sep) ? path.join(dest, path.basename(from)) : dest;
        fs.cpSync(from, to, { recursive: true });
      }
    }
    // Every chunk loads on its own: a bundled package's top-level names never clash with the
    // chunks' shims, even in chunks a test bridge never reaches (cloud credentials, the MCP SDK).
    const chunks = fs.readdirSync(path.join(image, 'dist/server')).filter((f) => f.endsWith('.mjs'));
    assert.ok(chunks.length > 5, 'the server is split into chunks');
    const load = `for (const f of ${JSON.stringify(chunks.filter((f) => f !== 'main.mjs'))}) await import('./' + f);`;
    execFileSync(process.execPath, ['--input-type=module', '-e', load], {
      cwd: path.join(image, 'dist/server'),
    });

    const cwd = tempDirSync('aibridge-cwd-');
    const child = spawn(
      process.execPath,
      [path.join(image, 'dist/aibridge.cjs'), 'serve', '--port', '0', '--data-dir', path.join(cwd, 'data')],
      {
        cwd,
        env: { PATH: process.env.PATH, AIBRIDGE_LOG_LEVEL: 'warn' },
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    try {
      let out = '';
      const url = await new Promise<string>((resolve, reject) => {
        const t = setTimeout(() => reject(new Error(`the image's bridge did not start: ${out}`)), 30_000);
        const seen = (c: Buffer): void => {
          out += c;
          const found = /listening on (http:\/\/\S+)/.exec(out);
          if (found) {
            clearTimeout(t);
            resolve(found[1]!);
          }
        };
        child.stdout!.on('data', seen);
        child.stderr!.on('data', seen);
      });
      assert.equal((await fetch(`${url}/healthz`)).status, 200);
      const page = await fetch(`${url}/admin`);
      assert.equal(
        page.status,
        200,
        'the admin page is found beside the bundle, not under the working directory',
      );
      assert.match(await page.text(), /<html/i);
    } finally {
      child.kill('SIGKILL');
      fs.rmSync(image, { recursive: true, force: true });
      fs.rmSync(cwd, { recursive: true, force: true });
    }
  });
});
