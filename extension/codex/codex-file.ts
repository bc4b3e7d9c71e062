import path from 'node:path';
import { readTextOrEmpty, writeFileAtomic } from '../atomic-file';
import { homeDir } from '../home-dir';
import { CODEX_PROVIDER } from './codex-config';

type Env = Record<string, string | undefined>;

/** Codex's home: `$CODEX_HOME`, by default `~/.codex`. */
export function codexHome(env: Env = process.env): string {
  return env.CODEX_HOME?.trim() || path.join(homeDir(env), '.codex');
}

/** Where Codex reads its config: `$CODEX_HOME/config.toml`, by default `~/.codex/config.toml`. */
export function codexConfigPath(env: Env = process.env): string {
  return path.join(codexHome(env), 'config.toml');
}

/** The profile file `codex --profile aibridge` reads (Codex ≥ 0.169: one file per profile). */
export function codexProfilePath(env: Env = process.env): string {
  return path.join(codexHome(env), `${CODEX_PROVIDER}.config.toml`);
}

/** The file's text, or "" when it does not exist yet. */
export const readCodexConfig = readTextOrEmpty;

/**
 * Replaces the file in one rename, so Codex never reads half a config; the previous version is kept
 * next to it as config.toml.bak.
 */
export const writeCodexConfig = writeFileAtomic;
