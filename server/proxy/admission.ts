import type { ResponseOwners } from '../audit/response-owners';
import type { InterceptionStart } from '../core/facts';
import type { Principal } from '../core/principal';
import type { UserPlaces } from '../core/user-places';
import { BridgeError } from '../errors';
import type { AttemptTarget } from '../routing/routes';
import type { ServedAs } from '../spend/governance';
import type { CircuitBreakers } from './circuit-breaker';

/** What admission decides about one upstream round, before the provider is contacted. */
export interface AdmissionTicket {
  start: InterceptionStart;
  /**
   * Size of the body going upstream as the estimates (budget, tpm hold) count it: inline images at
   * the tokens they cost, not their base64 size (core/inline-media.ts).
   */
  bodyBytes: number;
  /** Set by the breaker gate: this round is the half-open probe. */
  probe: boolean;
  /**
   * The routing table names the request's model: the targets it may try, in order. Their
   * configuration and breakers are checked per attempt (docs/routing.md), not the instance it
   * arrived on; the governance gate narrows them to those the user may use.
   */
  targets?: readonly AttemptTarget[];
  /**
   * A refusal the exchange found in the request itself (a parameter a tool-call deny rule could
   * not be enforced on), raised by `foundRefusal` once the request has counted against the rate
   * limits: it is recorded as any refusal, so it counts as a request.
   */
  refusal?: BridgeError;
  /**
   * The exchange's place among its user's requests in flight: set by `withinInFlight` at the first
   * round's admission, given back when the exchange ends (later rounds hold the same one).
   */
  place?: () => void;
  /** A later round of an exchange already admitted (tool injection), not a new request. */
  continuing?: boolean;
}

/**
 * One check: throws the refusal (a BridgeError) or calls the next check with the same ticket. A
 * check that needs nothing asynchronous answers at once (a request's admission usually needs no
 * promise at all).
 */
export type AdmissionGate = (
  ticket: AdmissionTicket,
  next: (ticket: AdmissionTicket) => void | Promise<void>,
) => void | Promise<void>;

/**
 * Composes gates into one admission, in the style of undici's interceptors: each gate decides
 * whether the next runs. The first refusal ends admission; gates after it are never asked, so a
 * refused request reserves no budget and counts against no rate limit. Throws a refusal of a gate
 * that answered at once; a promise only when a gate needed one.
 */
export function composeAdmission(
  gates: readonly AdmissionGate[],
): (ticket: AdmissionTicket) => void | Promise<void> {
  // Chained once, here: each gate's `next` is the rest of the chain, so admitting a request makes
  // no closures (one per gate and request before).
  let chain: (ticket: AdmissionTicket) => void | Promise<void> = () => undefined;
  for (let i = gates.length - 1; i >= 0; i--) {
    const gate = gates[i]!;
    const next = chain;
    chain = (ticket) => gate(ticket, next);
  }
  return chain;
}

/**
 * The provider has no key configured: nothing can be forwarded, unless the user brought their own.
 * `setting`: what would give it one, named in the refusal (a mistyped variable is the usual cause).
 */
export function upstreamConfigured(configured: () => boolean, setting?: string): AdmissionGate {
  const message = setting ? `The bridge has no upstream key for this provider: ${setting}.` : undefined;
  return (t, next) => {
    if (!t.targets && t.start.billedTo !== 'user' && !configured())
      throw new BridgeError('provider_not_configured', message);
    return next(t);
  };
}

/** The audit store cannot take records and the bridge is set to refuse rather than serve unrecorded. */
export function auditAccepting(accepting: () => boolean): AdmissionGate {
  return (t, next) => {
    if (!accepting()) throw new BridgeError('audit_unavailable');
    return next(t);
  };
}

/**
 * A request that continues a stored response (Responses' `previous_response_id`, which makes the
 * provider read that conversation's whole context) goes upstream only for the response's owner;
 * anyone else gets `404 response_not_found` as if it did not exist. One that names a stored
 * conversation (`conversation`, read and appended to) goes only for an admin, since no bridge route
 * creates one; a member gets `404 conversation_not_found` (server/audit/response-owners.ts).
 * Checked before governance, so a refused request reserves no budget.
 */
export function continuesOwnResponse(
  owners: Pick<ResponseOwners, 'check' | 'checkConversation' | 'checkItems'>,
  keyScopesStoredState: boolean,
): AdmissionGate {
  return (t, next) => {
    const { continues: id, conversation, references } = t.start.request;
    // Sent with the user's own key, a provider that keeps state per key (keyScopesStoredState)
    // itself holds the response (and the conversation) to that key's owner.
    if (id === undefined && conversation === undefined && references === undefined) return next(t);
    if (t.start.billedTo === 'user' && keyScopesStoredState) return next(t);
    if (conversation !== undefined) owners.checkConversation(conversation, t.start.principal);
    // One check after the other, never two at once: a lookup left running when the other check
    // threw would reject with nobody listening, which ends the process.
    const response = id === undefined ? undefined : owners.check(id, t.start.principal);
    const items = (): void | Promise<void> =>
      references === undefined ? undefined : owners.checkItems(references, t.start.principal);
    if (response !== undefined) return response.then(items).then(() => next(t));
    const pending = items();
    return pending ? pending.then(() => next(t)) : next(t);
  };
}

/** What the governance gate asks of server/spend/governance.ts. */
export interface GovernanceGate {
  /** Counts the request (of `bodyBytes`) against the caller's rate limits, or throws `rate_limited`. */
  count(start: InterceptionStart, bodyBytes: number, hold?: boolean): void;
  /** Counts a passthrough against the caller's rate limits, or throws `rate_limited`. */
  countUnmetered(principal: Principal): void;
  admit(start: InterceptionStart, bodyBytes: number, targets?: readonly ServedAs[]): void | Promise<void>;
  routeTargets<T>(start: InterceptionStart, targets: readonly T[], servedAs: (t: T) => ServedAs): T[];
}

/**
 * Rate limits, ahead of the refusals a member's own request can earn (another's stored response,
 * the model policy, a budget): a refused request is recorded as any other, so it counts as one,
 * and a member cannot write refusals into the audit faster than their limit lets them send requests.
 */
export function rateLimited(governance: GovernanceGate): AdmissionGate {
  return (t, next) => {
    // A later round of an exchange holds no tokens of its own while it runs: its usage counts when
    // it ends.
    governance.count(t.start, t.bodyBytes, t.continuing !== true);
    return next(t);
  };
}

/**
 * The user's requests in flight on this replica (AIBRIDGE_REQUESTS_IN_FLIGHT_PER_USER), after
 * the rate limits: a refusal is recorded, so it counts as a request. Each holds an upstream call,
 * with the organisation's key, for as long as the provider takes: one key held 756 of them open at
 * once, which uses the key's concurrency and rate limits up for everyone else. The place is given
 * back when the exchange ends, however it ends (Exchange.release); its later rounds hold the first.
 */
export function withinInFlight(inFlight: UserPlaces): AdmissionGate {
  return (t, next) => {
    t.place ??= inFlightPlace(inFlight, t.start.principal.user.id);
    return next(t);
  };
}

/**
 * One of the user's places among their requests in flight, or `429 rate_limited` when they hold
 * them all. Metered requests take it at admission (withinInFlight), passthroughs (token counts,
 * model lists, stored responses) before they are forwarded: each holds an upstream call with the
 * organisation's key all the same.
 */
export function inFlightPlace(inFlight: UserPlaces, userId: string): () => void {
  const place = inFlight.take(userId);
  if (place === undefined)
    throw new BridgeError(
      'rate_limited',
      `You have ${inFlight.limit} requests to providers running on this bridge, as many as one user may at once (AIBRIDGE_REQUESTS_IN_FLIGHT_PER_USER); retry when one has finished.`,
      { headers: { 'retry-after': '1' } },
    );
  return place;
}

/** Raises the refusal the exchange found in the request (`AdmissionTicket.refusal`), if any. */
export function foundRefusal(): AdmissionGate {
  return (t, next) => {
    if (t.refusal) throw t.refusal;
    return next(t);
  };
}

/** Model policy and budgets (server/spend/governance.ts); rate limits come before (`rateLimited`). */
export function governed(governance: GovernanceGate): AdmissionGate {
  return (t, next) => {
    let served: ServedAs[] | undefined;
    if (t.targets) {
      t.targets = governance.routeTargets(t.start, t.targets, servedAs);
      served = t.targets.map(servedAs);
    }
    const pending = governance.admit(t.start, t.bodyBytes, served);
    return pending ? pending.then(() => next(t)) : next(t);
  };
}

/** The provider+model circuit breaker: refused with `retry-after` while open; one probe when half-open. */
export function breakerClosed(breakers: CircuitBreakers, provider: string): AdmissionGate {
  return (t, next) => {
    if (t.targets) return next(t);
    const admission = breakers.admit(provider, t.start.request.model);
    if (!admission.admitted) {
      const seconds = Math.max(1, Math.ceil(admission.retryAfterMs / 1000));
      throw new BridgeError(
        'circuit_open',
        `The provider has been failing for ${t.start.request.model ?? 'this model'}; retry in ${seconds}s.`,
        { headers: { 'retry-after': String(seconds) } },
      );
    }
    t.probe = admission.probe;
    return next(t);
  };
}

function servedAs(t: AttemptTarget): ServedAs {
  return { provider: t.adapter.id, model: t.recordModel, ...(t.priceAs ? { priceAs: t.priceAs } : {}) };
}
