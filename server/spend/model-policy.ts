import type { ModelPolicy } from '../../shared/spend';
import { BridgeError } from '../errors';
import type { Store } from '../store/types';

/** `claude-*` globs, or `/regex/flags`. A bad regex is refused when the policy is written. */
function compilePattern(pattern: string): RegExp {
  const m = /^\/(.+)\/([a-z]*)$/.exec(pattern);
  if (m) {
    try {
      return new RegExp(m[1]!, m[2]);
    } catch (err) {
      throw new BridgeError('invalid_request', `"${pattern}" is not a valid regular expression.`, {
        cause: err,
      });
    }
  }
  const escaped = pattern
    .replace(/[.+^${}()|[\]\\]/g, '\\$&')
    .replace(/\*/g, '.*')
    .replace(/\?/g, '.');
  return new RegExp(`^${escaped}$`, 'i');
}

interface Compiled {
  policy: ModelPolicy;
  allow: RegExp[];
  deny: RegExp[];
}

/** Model allow and deny lists per team (`*`: everyone), checked before a request leaves the bridge. */
export class ModelPolicies {
  private readonly byTeam = new Map<string, Compiled>();

  constructor(private readonly store: Store) {}

  /** Reads the stored policies, replacing what was loaded (again when another replica changes them). */
  async load(): Promise<void> {
    const policies = await this.store.listDocs<ModelPolicy>('model_policy');
    this.byTeam.clear();
    for (const p of policies) this.index(p);
  }

  private index(p: ModelPolicy): void {
    this.byTeam.set(p.team, {
      policy: p,
      allow: p.allow.map(compilePattern),
      deny: p.deny.map(compilePattern),
    });
  }

  list(): ModelPolicy[] {
    return [...this.byTeam.values()].map((c) => c.policy);
  }

  get(team: string): ModelPolicy {
    const c = this.byTeam.get(team);
    if (!c) throw new BridgeError('policy_not_found', `No model policy for team "${team}".`);
    return c.policy;
  }

  async put(team: string, allow: string[], deny: string[]): Promise<ModelPolicy> {
    for (const p of [...allow, ...deny]) compilePattern(p);
    const policy: ModelPolicy = { team, allow, deny, updatedAt: new Date().toISOString() };
    await this.store.putDoc('model_policy', team, policy);
    this.index(policy);
    return policy;
  }

  async delete(team: string): Promise<ModelPolicy> {
    const p = this.get(team);
    await this.store.deleteDoc('model_policy', team);
    this.byTeam.delete(team);
    return p;
  }

  /** Throws `model_denied` when the org-wide or the team's policy refuses the model. */
  check(team: string | null, model: string | null): void {
    const name = model ?? '';
    for (const key of team === null ? ['*'] : ['*', team]) {
      const c = this.byTeam.get(key);
      if (!c) continue;
      const who = key === '*' ? 'everyone' : `team "${key}"`;
      // A request that names no model (a Responses request whose stored `prompt` picks it) runs
      // a model the bridge cannot check: refused wherever a list applies, or a deny list is moot.
      if (model === null && (c.deny.length > 0 || c.allow.length > 0)) {
        throw new BridgeError(
          'model_denied',
          `The request names no model, and a model policy applies to ${who}: name the model in the request.`,
        );
      }
      if (c.deny.some((r) => r.test(name))) {
        throw new BridgeError('model_denied', `Model "${name}" is denied for ${who}.`);
      }
      if (c.allow.length > 0 && !c.allow.some((r) => r.test(name))) {
        throw new BridgeError('model_denied', `Model "${name}" is not in the allowed models for ${who}.`);
      }
    }
  }
}
