import type { BudgetCharge, BudgetSettlement, Store } from '../store/types';

/** Waits before each retry of a settlement: about 3.5 s in all, within a shutdown's grace. */
const RETRY_DELAYS_MS = [500, 1000, 2000];

/**
 * Settles a request's (or a lease's) reservation and charges, trying again when the store fails
 * (a database blip, a deadlock, a pool that was full): a settlement lost would leave its
 * reservation refusing others until it lapses and its cost out of the ledger for the rest of the
 * period. A failure whose commit went through after all is charged twice: spend overstated, which
 * errs toward refusing, never toward overspending. `onError` hears each failure; it never rejects.
 */
export async function settleWithRetries(
  store: Store,
  id: string,
  charges: BudgetCharge[],
  onError: (err: unknown) => void,
  delays: readonly number[] = RETRY_DELAYS_MS,
): Promise<BudgetSettlement[]> {
  for (let attempt = 0; ; attempt++) {
    try {
      return await store.settleBudgets(id, charges);
    } catch (err) {
      onError(err);
      const wait = delays[attempt];
      // Given up (reported): the reservation lapses on its own, its cost is in the records.
      if (wait === undefined) return [];
      // Not unref'd: a shutdown waits for settlements, and this one is still on its way.
      await new Promise((r) => setTimeout(r, wait));
    }
  }
}
