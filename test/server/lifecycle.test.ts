import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import path from 'node:path';
import pino from 'pino';
import { buildApp } from '../../server/app';
import { loadConfig } from '../../server/config';
import { createStore } from '../../server/store/create-store';
import { tempDir } from '../helpers/bridge';

describe('building the bridge', () => {
  it('a start that fails halfway releases what it had opened (the store is closed)', async () => {
    const dir = await tempDir();
    // A servers file that names an unknown transport: the MCP capability fails after the store,
    // identity, spend and audit capabilities were built.
    const mcpFile = path.join(dir, 'mcp.json');
    await fs.writeFile(
      mcpFile,
      JSON.stringify({ servers: { bad: { transport: { type: 'carrier-pigeon' } } } }),
    );
    const config = loadConfig(
      { port: '0', 'data-dir': dir },
      { AIBRIDGE_MCP_CONFIG: mcpFile, AIBRIDGE_LOG_LEVEL: 'silent' },
    );
    const store = await createStore(config, pino({ level: 'silent' }));
    let closed = 0;
    const close = store.close.bind(store);
    store.close = async () => {
      closed++;
      await close();
    };
    await assert.rejects(
      buildApp(config, { store, logStream: pino.destination('/dev/null') }),
      /bad|transport/i,
    );
    assert.equal(closed, 1, 'the store opened for the failed start was closed');
  });
});
