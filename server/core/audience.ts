/** Whose event it is: members receive only their own, admins every event. */
export interface Audience {
  userId: string | null;
  team: string | null;
}
