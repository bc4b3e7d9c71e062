import { EmbeddedStore } from '../../server/store/embedded/embedded-store';
import { tempDir } from '../helpers/bridge';
import { storeContract } from './contract';

storeContract('embedded', async () => {
  const dataDir = await tempDir('aibridge-store-');
  // Small segments, so retention has whole segments to drop; quick last-use flushes.
  const open = async (): Promise<EmbeddedStore> => {
    const store = new EmbeddedStore({ dataDir, segmentBytes: 4096, touchFlushMs: 10 });
    await store.open();
    return store;
  };
  return { store: await open(), reopen: open };
});
