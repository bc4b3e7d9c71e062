import http from 'node:http';
import { type Listening, listenOnLoopback } from './loopback';

/** The organisation's Gemini key the bridge must send upstream. */
export const GEMINI_UPSTREAM_KEY = 'gemini-upstream-key';

/** One request the mock received. */
export interface GeminiSeen {
  method: string;
  url: string;
  headers: http.IncomingHttpHeaders;
  body: unknown;
}

export interface GeminiMock extends Listening {
  seen: GeminiSeen[];
}

/** What the mock answers; the model's name says which (so each test picks its answer). */
const USAGE = {
  promptTokenCount: 1200,
  candidatesTokenCount: 35,
  cachedContentTokenCount: 1000,
  thoughtsTokenCount: 12,
  toolUsePromptTokenCount: 7,
  totalTokenCount: 1254,
};

/** An image model's answer (gemini-2.5-flash-image): one 1024×1024 image is 1290 tokens, by modality. */
const IMAGE_USAGE = {
  promptTokenCount: 9,
  candidatesTokenCount: 1290,
  totalTokenCount: 1299,
  promptTokensDetails: [{ modality: 'TEXT', tokenCount: 9 }],
  candidatesTokensDetails: [{ modality: 'IMAGE', tokenCount: 1290 }],
};

/** `long`: a prompt past Gemini's 200k-token price tier. */
function answer(model: string, final: boolean, long = false): Record<string, unknown> {
  if (model.includes('image'))
    return {
      candidates: [
        {
          content: {
            role: 'model',
            parts: [{ inlineData: { mimeType: 'image/png', data: 'iVBORw0KGgo=' } }],
          },
          ...(final ? { finishReason: 'STOP' } : {}),
          index: 0,
        },
      ],
      usageMetadata: final ? IMAGE_USAGE : { promptTokenCount: 9, totalTokenCount: 9 },
      modelVersion: model,
      responseId: 'resp_img',
    };
  const parts = model.includes('tools')
    ? [{ functionCall: { name: 'get_weather', args: { city: 'Paris' } } }]
    : [{ text: 'Bonjour' }];
  return {
    candidates: [
      {
        content: { role: 'model', parts },
        ...(final ? { finishReason: 'STOP' } : {}),
        index: 0,
      },
    ],
    ...(final
      ? { usageMetadata: long ? { ...USAGE, promptTokenCount: 250_000 } : USAGE }
      : { usageMetadata: { promptTokenCount: 1200, totalTokenCount: 1200 } }),
    modelVersion: model,
    responseId: 'resp_1',
  };
}

/** What a grounded answer's candidate carries (the fields Google sends; the mock's queries). */
export const GROUNDING = {
  webSearchQueries: ['bridge weather paris', 'paris forecast today'],
  searchEntryPoint: { renderedContent: '<div>Search suggestions</div>' },
  groundingChunks: [
    { web: { uri: 'https://vertexaisearch.cloud.google.com/grounding-api-redirect/x', title: 'x.example' } },
  ],
  groundingSupports: [],
};

function withGrounding(a: Record<string, unknown>): Record<string, unknown> {
  const [c] = a.candidates as Record<string, unknown>[];
  return { ...a, candidates: [{ ...c, groundingMetadata: GROUNDING }] };
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** A `LIST:<dir>,<dir>` in the last content asks for one `list_directory` call per folder. */
const LIST = /LIST:([^\s]+)/;
/** A `CALL:<name>` in the last content asks for one call of that function (an MCP tool's, as an agent names it). */
const CALL = /CALL:([^\s]+)/;
/** Thought signatures the mock has handed out, one per answer with calls (as Gemini 3 does). */
let signatures = 0;

/**
 * A tool loop as the real API plays it, for agents that run their tools: a last content asking
 * `LIST:a,b` gets one `list_directory` call per folder, without an `id` (generateContent gives its
 * calls none) and the answer's thought signature on the first call only; a last content of
 * `functionResponse` parts (the results) gets the final text, and one asking `CALL:<name>` one call
 * of that function. Undefined otherwise.
 */
function toolLoop(model: string, body: unknown): Record<string, unknown> | undefined {
  const contents = (body as { contents?: { parts?: Record<string, unknown>[] }[] } | null)?.contents;
  const parts = Array.isArray(contents) ? (contents.at(-1)?.parts ?? []) : [];
  let answer: Record<string, unknown>[] | undefined;
  if (parts.some((p) => p.functionResponse !== undefined)) answer = [{ text: 'Done.' }];
  else {
    const dirs = parts.map((p) => LIST.exec(String(p.text ?? ''))?.[1]).find((d) => d !== undefined);
    const call = parts.map((p) => CALL.exec(String(p.text ?? ''))?.[1]).find((c) => c !== undefined);
    if (call !== undefined) answer = [{ functionCall: { name: call, args: { title: 'from the mock' } } }];
    else if (dirs !== undefined) {
      const signature = Buffer.from(`signature-${++signatures}`).toString('base64');
      answer = dirs.split(',').map((dir, i) => ({
        functionCall: { name: 'list_directory', args: { dir_path: dir } },
        ...(i === 0 ? { thoughtSignature: signature } : {}),
      }));
    }
  }
  if (!answer) return undefined;
  return {
    candidates: [{ content: { role: 'model', parts: answer }, finishReason: 'STOP', index: 0 }],
    usageMetadata: USAGE,
    modelVersion: model,
    responseId: 'resp_loop',
  };
}

/**
 * The Gemini API's wire format as generativelanguage.googleapis.com speaks it:
 * `POST /v1beta/models/{model}:generateContent` (JSON) and `:streamGenerateContent?alt=sse` (SSE,
 * `data:` lines only, usage on every chunk, the total on the last), `:countTokens`, the model list,
 * and Google's error shape for a model named `*-overloaded` and for a wrong key.
 */
export async function startGeminiMock(): Promise<GeminiMock> {
  const seen: GeminiSeen[] = [];
  const server = http.createServer((req, res) => {
    void (async () => {
      const chunks: Buffer[] = [];
      for await (const c of req) chunks.push(c as Buffer);
      const text = Buffer.concat(chunks).toString('utf8');
      const body: unknown = text ? JSON.parse(text) : null;
      seen.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers, body });
      const url = new URL(req.url ?? '/', 'http://mock');
      // JSONP, as Google's REST APIs answer `callback` (a system parameter): the JSON wrapped in a call.
      const callback = url.searchParams.get('callback') ?? url.searchParams.get('$callback');
      const json = (status: number, body: unknown) => {
        res.writeHead(status, {
          'content-type': callback ? 'text/javascript; charset=UTF-8' : 'application/json; charset=UTF-8',
          'x-request-id': 'g-req-1',
        });
        res.end(callback ? `// API callback\n${callback}(${JSON.stringify(body)});` : JSON.stringify(body));
      };
      if (req.headers['x-goog-api-key'] !== GEMINI_UPSTREAM_KEY || url.searchParams.has('key'))
        return json(400, {
          error: {
            code: 400,
            message: 'API key not valid. Please pass a valid API key.',
            status: 'INVALID_ARGUMENT',
          },
        });
      const m = /^\/v1(?:beta)?\/models(?:\/([^/:]+)(?::(\w+))?)?$/.exec(url.pathname);
      if (!m) return json(404, { error: { code: 404, message: 'not found', status: 'NOT_FOUND' } });
      const [, model, method] = m;
      if (!model) return json(200, { models: [{ name: 'models/gemini-2.5-flash' }] });
      if (method === 'countTokens') return json(200, { totalTokens: 42 });
      if (model.endsWith('-overloaded'))
        return json(503, {
          error: { code: 503, message: 'The model is overloaded.', status: 'UNAVAILABLE' },
        });
      const loop =
        method === 'generateContent' || method === 'streamGenerateContent'
          ? toolLoop(model, body)
          : undefined;
      if (loop && method === 'generateContent') return json(200, loop);
      if (loop && url.searchParams.get('alt') === 'sse') {
        res.writeHead(200, { 'content-type': 'text/event-stream', 'x-request-id': 'g-req-1' });
        return res.end(`data: ${JSON.stringify(loop)}\r\n\r\n`);
      }
      if (loop) return json(200, [loop]);
      if (method === 'generateContent' && model.includes('nousage')) {
        const { usageMetadata: _left, ...rest } = answer(model, true);
        return json(200, rest);
      }
      // Grounding with Google Search: the queries it ran, on the last answer (repeated on the
      // stream's last two chunks, as Google may).
      const grounded =
        isRecord(body) &&
        Array.isArray(body.tools) &&
        body.tools.some((t) => isRecord(t) && 'googleSearch' in t);
      const last = (): Record<string, unknown> =>
        grounded ? withGrounding(answer(model, true)) : answer(model, true);
      if (method === 'generateContent')
        return json(200, grounded ? last() : answer(model, true, text.includes('LONG')));
      if (method === 'streamGenerateContent' && url.searchParams.get('alt') === 'sse') {
        res.writeHead(200, { 'content-type': 'text/event-stream', 'x-request-id': 'g-req-1' });
        res.write(
          `data: ${JSON.stringify({ ...answer(model, false), candidates: [{ content: { role: 'model', parts: [{ text: 'Bon' }] }, ...(grounded ? { groundingMetadata: GROUNDING } : {}), index: 0 }] })}\r\n\r\n`,
        );
        setImmediate(() => res.end(`data: ${JSON.stringify(last())}\r\n\r\n`));
        return;
      }
      // Without `alt=sse`: one JSON array of the chunks.
      if (method === 'streamGenerateContent') return json(200, [answer(model, false), answer(model, true)]);
      return json(400, { error: { code: 400, message: 'unsupported', status: 'INVALID_ARGUMENT' } });
    })();
  });
  return { ...(await listenOnLoopback(server)), seen };
}
