import { randomUUID } from 'node:crypto';
import { periodKey } from '../store/budget-math';
import type {
  BudgetClaim,
  BudgetLedger,
  BudgetSettlement,
  LeaseSizing,
  NewInterception,
  Store,
} from '../store/types';
import { settleWithRetries } from './settle-retry';

/** The longest a new lease waits for the one it replaces to settle. */
const SETTLING_WAIT_MS = 1000;

/** A lease takes this share of a budget's headroom (what is left of the limit)... */
export const LEASE_SHARE = 0.1;
/** ...and never more than this much, however large the budget. */
export const LEASE_MAX_USD = 5;
/**
 * How often leases in use are replaced by fresh ones and idle ones returned: how stale another
 * replica's view of this one's spend gets, and how late a threshold alert may be.
 */
export const LEASE_RENEW_MS = 1000;
/**
 * Renewal ticks a closed lease waits for its running requests before it settles what the others
 * cost anyway (a request whose end is never reported must not keep the rest off the ledger); the
 * stragglers are then charged one by one as they end.
 */
export const LEASE_STRAGGLER_TICKS = 900;

interface Lease<Tag> {
  id: string;
  claim: BudgetClaim;
  tag: Tag;
  grantedUsd: number;
  /** Estimates of the requests running against it, plus what those that ended cost. */
  usedUsd: number;
  /** What requests that ended cost: charged to the ledger when the lease settles. */
  costUsd: number;
  running: number;
  /** Renewal ticks since it was taken: one passed, it is renewed or returned at the next. */
  age: number;
  /** The estimate it was sized for: its replacement is sized alike. */
  estimateUsd: number;
  /** Takes no more requests: settles once none runs against it. */
  closed: boolean;
  /** Settled (its reservation dropped): requests still running on it are charged one by one. */
  settled: boolean;
  /** A request was admitted since it was opened (else it is returned at the next renewal). */
  used: boolean;
  /** The newest priced request charged to it, for the alert its settlement may raise. */
  last?: NewInterception;
}

/** The leases a request was admitted against, and the estimate it took from each. */
export interface LeaseTicket {
  leases: unknown[];
  /** The ledgers (`periodKey`) the leases are on. */
  keys: string[];
  estimateUsd: number;
}

export type LeaseAdmission =
  | { kind: 'admitted'; ticket: LeaseTicket }
  /** `index`: the claim whose budget is spent. */
  | { kind: 'refused'; index: number; ledger: BudgetLedger }
  /** Other requests of this replica used up every lease it took: admit this one the slow way. */
  | { kind: 'contended' };

/** Whether a new request of `estimateUsd` fits in what the lease has left (a budget that only alerts never refuses). */
function fits(l: Lease<unknown>, estimateUsd: number): boolean {
  return !l.claim.block || l.usedUsd + estimateUsd <= l.grantedUsd + 1e-12;
}

/** A lease is taken for one limit: a budget changed since is leased anew. */
function sameTerms(a: BudgetClaim, b: BudgetClaim): boolean {
  return a.limitUsd === b.limitUsd && a.block === b.block;
}

/**
 * Per-replica leases of budget headroom, for stores shared by replicas: a replica reserves a share
 * of a budget's headroom in one round trip (`Store.leaseBudget`) and admits requests against it
 * locally, so requests of a team do not queue on the team's ledger row in the database. Every
 * LEASE_RENEW_MS a lease in use is replaced (a new one taken, the old one settled with what its
 * requests cost once they end) and an idle one returned. Overshoot: a lease never takes more than
 * what is left except for one request's estimate, and the store grants no lease once spent plus
 * reserved reaches the limit, so spend stays within the limit plus one request's estimate, plus
 * whatever requests cost beyond their estimates (as without leases) — see docs/performance.md.
 */
export class BudgetLeases<Tag> {
  /** The lease taking requests, per ledger. */
  private readonly open = new Map<string, Lease<Tag>>();
  /** Leases being taken, per ledger: requests arriving meanwhile wait for the same one. */
  private readonly taking = new Map<string, Promise<Lease<Tag> | { refusedBy: BudgetLedger }>>();
  private readonly pending = new Set<Promise<void>>();
  /** Settlements under way, per ledger: a lease taken after one waits for the headroom it returns. */
  private readonly settling = new Map<string, Promise<void>>();
  private timer: NodeJS.Timeout | undefined;
  /** Closed leases waiting for their running requests, with the ticks they have waited. */
  private readonly draining = new Map<Lease<Tag>, number>();

  constructor(
    private readonly store: Store,
    /** A lease's settlement crossed a threshold: `rec` is the newest request charged to it. */
    private readonly onCrossed: (tag: Tag, s: BudgetSettlement, rec: NewInterception) => void,
    private readonly onError: (err: unknown) => void,
    private readonly renewMs = LEASE_RENEW_MS,
    private readonly stragglerTicks = LEASE_STRAGGLER_TICKS,
  ) {}

  /** Admits a request on every claim's lease (taking leases where needed), or says which budget is spent. */
  async admit(entries: { claim: BudgetClaim; tag: Tag }[], estimateUsd: number): Promise<LeaseAdmission> {
    for (let attempt = 0; attempt < 3; attempt++) {
      const got = await Promise.all(entries.map((e) => this.leaseFor(e, estimateUsd)));
      const refused = got.findIndex((g) => 'refusedBy' in g);
      if (refused >= 0) {
        const g = got[refused] as { refusedBy: BudgetLedger };
        return { kind: 'refused', index: refused, ledger: g.refusedBy };
      }
      const leases = got as Lease<Tag>[];
      // No await from here: every lease takes the request, or none does.
      const short = leases.filter((l) => l.closed || !fits(l, estimateUsd));
      if (short.length === 0) {
        for (const l of leases) {
          l.usedUsd += estimateUsd;
          l.running++;
          l.used = true;
        }
        return {
          kind: 'admitted',
          ticket: { leases, keys: leases.map((l) => periodKey(l.claim)), estimateUsd },
        };
      }
      for (const l of short) this.close(l);
    }
    return { kind: 'contended' };
  }

  /** The request ended: what it cost counts against its leases (and their ledgers once they settle). */
  finish(ticket: LeaseTicket, costUsd: number, rec: NewInterception): void {
    for (const l of ticket.leases as Lease<Tag>[]) {
      if (l.settled) {
        // A straggler of a lease settled without it: charged on its own.
        if (costUsd > 0) this.write(l, `${l.id}:${rec.id}`, costUsd, rec);
        continue;
      }
      l.usedUsd += costUsd - ticket.estimateUsd;
      l.costUsd += costUsd;
      l.running--;
      if (costUsd > 0) l.last = rec;
      if (l.closed && l.running === 0) this.settle(l);
    }
  }

  /** Returns every lease (each settles once its requests end) and waits for the settlements so far. */
  async flush(): Promise<void> {
    for (const l of [...this.open.values()]) this.close(l);
    await Promise.all([...this.taking.values()].map((p) => p.catch(() => undefined)));
    for (const l of [...this.open.values()]) this.close(l);
    while (this.pending.size > 0) await Promise.all([...this.pending]);
  }

  close(lease: unknown): void {
    const l = lease as Lease<Tag>;
    if (l.closed) return;
    l.closed = true;
    const key = periodKey(l.claim);
    if (this.open.get(key) === l) this.open.delete(key);
    if (l.running === 0) this.settle(l);
    else this.draining.set(l, 0);
    if (this.open.size === 0 && this.draining.size === 0 && this.timer) {
      clearInterval(this.timer);
      this.timer = undefined;
    }
  }

  private leaseFor(
    e: { claim: BudgetClaim; tag: Tag },
    estimateUsd: number,
  ): Lease<Tag> | Promise<Lease<Tag> | { refusedBy: BudgetLedger }> {
    const key = periodKey(e.claim);
    const have = this.open.get(key);
    if (have && sameTerms(have.claim, e.claim) && fits(have, estimateUsd)) return have;
    const taking = this.taking.get(key);
    if (taking) return taking;
    if (have) this.close(have);
    return this.take(key, e, estimateUsd);
  }

  /** Takes a lease for `key`; while it is being taken, requests wait for it instead of taking another. */
  private take(
    key: string,
    e: { claim: BudgetClaim; tag: Tag },
    estimateUsd: number,
  ): Promise<Lease<Tag> | { refusedBy: BudgetLedger }> {
    const p = (async () => {
      const id = `lease_${randomUUID()}`;
      // The lease this one replaces may still be settling: its unused headroom is not back yet.
      // Waited for a moment only: a settlement being retried (the database struggling) would hold
      // every request of the budget for its retries, and the headroom comes back either way.
      const settling = this.settling.get(key);
      if (settling)
        await Promise.race([settling, new Promise((r) => setTimeout(r, SETTLING_WAIT_MS).unref())]);
      const out = await this.store.leaseBudget(id, e.claim, this.sizing(estimateUsd));
      if (!out.ok) return { refusedBy: out.refusedBy };
      const lease: Lease<Tag> = {
        id,
        claim: e.claim,
        tag: e.tag,
        grantedUsd: out.grantedUsd,
        usedUsd: 0,
        costUsd: 0,
        running: 0,
        age: 0,
        estimateUsd,
        closed: false,
        settled: false,
        used: false,
      };
      const before = this.open.get(key);
      this.open.set(key, lease);
      if (before) this.close(before);
      this.timer ??= setInterval(() => this.renew(), this.renewMs).unref();
      return lease;
    })().finally(() => this.taking.delete(key));
    this.taking.set(key, p);
    return p;
  }

  private sizing(estimateUsd: number): LeaseSizing {
    return { minUsd: estimateUsd, maxUsd: LEASE_MAX_USD, share: LEASE_SHARE };
  }

  /**
   * Idle leases go back; leases in use are replaced in the background (the old one keeps taking
   * requests until the new one is there, then settles once its requests end), so requests do not
   * wait for the database while a lease is renewed.
   */
  private renew(): void {
    // Ages count ticks, not clock time: a test's frozen clock must not keep leases forever.
    for (const [l, ticks] of [...this.draining]) {
      if (ticks + 1 >= this.stragglerTicks) this.settle(l);
      else this.draining.set(l, ticks + 1);
    }
    for (const [key, l] of [...this.open]) {
      if (l.age++ < 1 || this.taking.has(key)) continue;
      if (!l.used) {
        this.close(l);
        continue;
      }
      this.take(key, { claim: l.claim, tag: l.tag }, l.estimateUsd).then(
        (got) => {
          // Spent meanwhile: the old lease stops too, and the next request is refused by the store.
          if ('refusedBy' in got) this.close(l);
        },
        (err: unknown) => {
          this.onError(err);
          this.close(l);
        },
      );
    }
    if (this.open.size === 0 && this.draining.size === 0 && this.timer) {
      clearInterval(this.timer);
      this.timer = undefined;
    }
  }

  private settle(l: Lease<Tag>): void {
    if (l.settled) return;
    l.settled = true;
    this.draining.delete(l);
    this.write(l, l.id, l.costUsd, l.last);
  }

  /** Drops the reservation `id` holds and charges `costUsd` to the lease's ledger. */
  private write(l: Lease<Tag>, id: string, costUsd: number, last: NewInterception | undefined): void {
    const key = periodKey(l.claim);
    const charges = costUsd > 0 ? [{ ...l.claim, costUsd }] : [];
    const p: Promise<void> = settleWithRetries(this.store, id, charges, this.onError)
      .then((settled) => {
        const s = settled[0];
        if (s && s.crossed !== null && last) this.onCrossed(l.tag, s, last);
      })
      .catch((err: unknown) => this.onError(err))
      .finally(() => {
        this.pending.delete(p);
        if (this.settling.get(key) === chained) this.settling.delete(key);
      });
    // Chained after any earlier settlement of the ledger, so waiting on it waits for all of them.
    const before = this.settling.get(key);
    const chained = before ? Promise.all([before, p]).then(() => undefined) : p;
    this.settling.set(key, chained);
    this.pending.add(p);
  }
}
