/** A model alias (docs/routing.md#model-aliases): a name clients ask for, standing for a real model. */
export interface ModelAlias {
  /** The name clients send as `model` (`fast`, `smart`). */
  alias: string;
  /** The real model it stands for; never another alias. */
  model: string;
  /** The team it applies to; null: everyone (a team's own alias of the same name wins for its members). */
  team: string | null;
  /** `file`: the providers file's default; `admin`: set through the API (wins over the file's). */
  source: 'file' | 'admin';
  /** When an admin set it; absent for the file's. */
  updatedAt?: string;
}
