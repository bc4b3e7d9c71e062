import type { ProviderInstanceInfo } from './identity';

/**
 * Provider families whose bridge routes speak Google's Gemini API (`/v1beta/models/…:generateContent`),
 * the API Gemini CLI calls: the Gemini API itself and Gemini on Vertex AI.
 */
export const GEMINI_TYPES: readonly string[] = ['gemini', 'vertex-gemini'];

/** The name the bridge gives its built-in Gemini instance; preferred when several speak Gemini. */
const PREFERRED = 'gemini';

/** An instance name is a route prefix (server/provider-config.ts): anything else is not put in a URL. */
export const INSTANCE_NAME = /^[a-z][a-z0-9-]{0,31}$/;

/**
 * The instance Gemini CLI should use, from what `GET /api/v1/me` says the bridge serves: the one
 * named `gemini` when it speaks Gemini, else the first that does; undefined when none does (or the
 * bridge predates the list), so Gemini CLI's own sign-in is left alone.
 */
export function geminiInstance(
  providers: readonly ProviderInstanceInfo[] | null | undefined,
): string | undefined {
  const speaking = (providers ?? []).filter(
    (p) => typeof p?.name === 'string' && GEMINI_TYPES.includes(p.type) && INSTANCE_NAME.test(p.name),
  );
  return (speaking.find((p) => p.name === PREFERRED) ?? speaking[0])?.name;
}
