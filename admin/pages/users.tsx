import { useState } from 'preact/hooks';
import type { CreatedKey, KeyInfo, Role, User } from '../../shared/identity';
import { api } from '../api';
import { when } from '../format';
import { ErrorNote, Field, Section, Select, useLoad } from '../ui';
import { KeyDialog } from './key-dialog';
import { KeysTable } from './keys-table';

const ROLES = ['member', 'admin'] as const;

function NewUserForm({ onCreated }: { onCreated(): void }) {
  const [email, setEmail] = useState('');
  const [name, setName] = useState('');
  const [team, setTeam] = useState('');
  const [role, setRole] = useState<Role>('member');
  const [error, setError] = useState<unknown>(undefined);
  const submit = async (e: Event): Promise<void> => {
    e.preventDefault();
    setError(undefined);
    try {
      await api<User>('POST', '/api/v1/users', {
        email,
        ...(name ? { name } : {}),
        ...(team ? { team } : {}),
        role,
      });
      setEmail('');
      setName('');
      setTeam('');
      setRole('member');
      onCreated();
    } catch (err) {
      setError(err);
    }
  };
  return (
    <form class="inline-form" onSubmit={submit} data-testid="new-user">
      <Field label="Email" name="email" type="email" value={email} onInput={setEmail} required />
      <Field label="Name" name="name" value={name} onInput={setName} />
      <Field label="Team" name="team" value={team} onInput={setTeam} />
      <Select<Role> label="Role" name="role" value={role} options={ROLES} onChange={setRole} />
      <button type="submit">Create user</button>
      <ErrorNote error={error} />
    </form>
  );
}

/** Team and role after creation: `PATCH /api/v1/users/:email` (the last admin stays an admin). */
function EditUserForm({ user, onSaved }: { user: User; onSaved(): void }) {
  const [team, setTeam] = useState(user.team ?? '');
  const [role, setRole] = useState<Role>(user.role);
  const [error, setError] = useState<unknown>(undefined);
  const save = async (e: Event): Promise<void> => {
    e.preventDefault();
    setError(undefined);
    try {
      await api<User>('PATCH', `/api/v1/users/${encodeURIComponent(user.email)}`, {
        team: team.trim() ? team.trim() : null,
        role,
      });
      onSaved();
    } catch (err) {
      setError(err);
    }
  };
  return (
    <form class="inline-form" onSubmit={save} data-testid="edit-user">
      <Field label="Team" name="edit-team" value={team} onInput={setTeam} />
      <Select<Role> label="Role" name="edit-role" value={role} options={ROLES} onChange={setRole} />
      <button type="submit">Save</button>
      <ErrorNote error={error} />
    </form>
  );
}

function UserKeys({ user, onIssued }: { user: User; onIssued(k: CreatedKey, owner: string): void }) {
  const keys = useLoad(
    () => api<{ items: KeyInfo[] }>('GET', `/api/v1/users/${encodeURIComponent(user.email)}/keys`),
    [user.id],
  );
  const [name, setName] = useState('');
  const [error, setError] = useState<unknown>(undefined);
  const issue = async (e: Event): Promise<void> => {
    e.preventDefault();
    setError(undefined);
    try {
      const created = await api<CreatedKey>(
        'POST',
        `/api/v1/users/${encodeURIComponent(user.email)}/keys`,
        name ? { name } : {},
      );
      setName('');
      keys.reload();
      onIssued(created, user.email);
    } catch (err) {
      setError(err);
    }
  };
  return (
    <div class="user-keys">
      <KeysTable keys={keys.data?.items ?? []} onChange={keys.reload} />
      <form class="inline-form" onSubmit={issue}>
        <Field label="Key name" name="key-name" value={name} onInput={setName} placeholder="e.g. laptop" />
        <button type="submit">Issue key</button>
      </form>
      <ErrorNote error={keys.error ?? error} />
    </div>
  );
}

/** Admins: create users, change their team and role, issue keys (shown once), revoke them. */
export function UsersPage() {
  const users = useLoad(() => api<{ items: User[] }>('GET', '/api/v1/users'), []);
  const [open, setOpen] = useState<string | null>(null);
  const [created, setCreated] = useState<{ key: CreatedKey; owner: string } | null>(null);
  return (
    <div class="page users">
      <Section title="New user">
        <NewUserForm onCreated={users.reload} />
      </Section>
      <Section title="Users">
        <table data-testid="users">
          <thead>
            <tr>
              <th>email</th>
              <th>name</th>
              <th>team</th>
              <th>role</th>
              <th>created</th>
              <th>status</th>
              <th />
            </tr>
          </thead>
          <tbody>
            {(users.data?.items ?? []).map((u) => [
              <tr key={u.id} data-user={u.email} class={u.deactivatedAt ? 'deactivated' : undefined}>
                <td>{u.email}</td>
                <td>{u.name ?? '—'}</td>
                <td>{u.team ?? '—'}</td>
                <td>{u.role}</td>
                <td>{when(u.createdAt)}</td>
                <td data-testid="user-status">
                  {/* Deactivated by the identity provider (SCIM): keys and sessions revoked, nothing deleted. */}
                  {u.deactivatedAt ? `deactivated ${when(u.deactivatedAt)}` : 'active'}
                </td>
                <td>
                  <button type="button" onClick={() => setOpen(open === u.id ? null : u.id)}>
                    {open === u.id ? 'Hide keys' : 'Keys'}
                  </button>
                </td>
              </tr>,
              open === u.id ? (
                <tr key={`${u.id}-keys`} class="expanded">
                  <td colSpan={7}>
                    <EditUserForm user={u} onSaved={users.reload} />
                    <UserKeys user={u} onIssued={(key, owner) => setCreated({ key, owner })} />
                  </td>
                </tr>
              ) : null,
            ])}
          </tbody>
        </table>
        <ErrorNote error={users.error} />
      </Section>
      <KeyDialog
        created={created?.key ?? null}
        owner={created?.owner ?? ''}
        onClose={() => setCreated(null)}
      />
    </div>
  );
}
