import { PostgresStore } from '../../server/store/postgres/postgres-store';
import { testPostgres } from '../helpers/postgres';
import { storeContract } from './contract';

storeContract('postgres', async () => {
  const url = await (await testPostgres()).createDatabase('contract');
  const open = async (): Promise<PostgresStore> => {
    const store = new PostgresStore({ url, maxConnections: 4 });
    await store.open();
    return store;
  };
  return { store: await open(), reopen: open };
});
