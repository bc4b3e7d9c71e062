import type { KeyInfo, Me } from '../../shared/identity';
import { api } from '../api';
import { ErrorNote, Section, useLoad } from '../ui';
import { KeysTable } from './keys-table';

/** Members: their own keys, with last use; they may revoke them (new keys come from an admin). */
export function KeysPage({ me }: { me: Me }) {
  const keys = useLoad(() => api<{ items: KeyInfo[] }>('GET', '/api/v1/me/keys'), []);
  return (
    <div class="page keys">
      <Section title="My keys">
        <KeysTable keys={keys.data?.items ?? []} onChange={keys.reload} currentKeyId={me.key.id} />
        <ErrorNote error={keys.error} />
      </Section>
    </div>
  );
}
