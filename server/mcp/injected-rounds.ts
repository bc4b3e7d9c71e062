import type { ToolCallRecord } from '../../shared/interception';
import { blockedMessage, type ToolPolicyMark } from '../../shared/tool-policy';
import type { Principal } from '../core/principal';
import type { Metrics } from '../metrics';
import { mcpToolNames } from '../policy/tool-rules';
import type { CallOutcome, InjectedCall, RoundEnd, ToolInjection } from '../providers/injection';
import type { JsonObject, PreparedRequest, ResponseFacts, WireApi } from '../providers/types';
import type { Exchange, Round, RoundStrategy } from '../proxy/exchange';
import type { ToolRun, ToolSession } from './session';

/** The tool-call rules (server/policy) over a call that goes by several names; a deny under any wins. */
export type CallJudge = (
  principal: Principal,
  names: readonly string[],
  input: unknown,
) => ToolPolicyMark | undefined;

export interface LoopDeps {
  /** Upstream requests one client request may take; the last is told to answer without tools. */
  maxRounds: number;
  metrics: Metrics;
  /** The tool-call rules, as the MCP gateway applies them: a denied call is not run. */
  judge?: CallJudge;
}

/** Every round's stream is rewritten: injected calls and the seams between rounds are hidden. */
export function prepareRound(
  api: WireApi,
  body: JsonObject,
  captureOutput: boolean | undefined,
  /** The client's target (path and query): its query is the API's to read (WireApi.prepare). */
  target: string,
): PreparedRequest {
  const q = target.indexOf('?');
  const prepared = api.prepare(body, Buffer.from(JSON.stringify(body)), q === -1 ? '' : target.slice(q));
  return { ...prepared, rewriteStream: true, ...(captureOutput ? { captureOutput: true } : {}) };
}

/** What became of a round's injected calls: run (and where their results went), or why not. */
interface CallsDone {
  runs: Map<string, ToolRun>;
  nextId: string | null;
}

/**
 * Tool injection as a round strategy (docs/mcp.md). Round after round the engine sends the request
 * and relays what the client may see (the wire API's {@link ToolInjection} hides injected calls and
 * the rounds' seams); this strategy runs the calls the model made of injected tools (those the
 * tool-call rules allow), concurrently, and asks the engine for another round with their results,
 * until the model answers, calls one of the client's tools, or the round limit makes it answer.
 * Every round is its own record.
 */
export class InjectedRounds implements RoundStrategy {
  /** Per round number: the runs of its calls, for its record. */
  private readonly done = new Map<number, CallsDone>();

  constructor(
    private readonly session: ToolSession,
    private readonly injection: ToolInjection,
    /** The client's body with the injected tools added. */
    private readonly offered: JsonObject,
    private readonly loop: LoopDeps,
  ) {}

  async run(x: Exchange): Promise<void> {
    x.markCalls = (facts, round, why) => this.mark(facts, round, why);
    let body = this.offered;
    let round = x.first;
    const json = this.injection.createJson(this.session.isInjected);
    const stream = this.injection.createStream(x.metered.body, this.session.isInjected);
    for (;;) {
      const last = round.n >= this.loop.maxRounds;
      const res = await x.send(round);
      if (!res) return;
      const type = String(res.headers['content-type'] ?? '');
      const sse = res.statusCode < 400 && type.includes('text/event-stream');
      const isJson = res.statusCode < 400 && type.includes('json');
      // The first answer is neither a stream nor JSON (an error, or something unexpected): relayed as it came.
      if (round.n === 1 && !sse && !isJson) return void (await x.read(round, res, { kind: 'relay' }));
      // A later round must answer in the first one's form; the engine turns a mismatch into an error.
      const streaming = x.streaming || (round.n === 1 && sse);
      if (streaming && sse) stream.beginRound(last);
      const read = await x.read(
        round,
        res,
        streaming ? { kind: 'events', filter: (ev) => stream.onEvent(ev) } : { kind: 'collect' },
      );
      if (!read) return;
      const end: RoundEnd = streaming ? stream.endRound() : json.addRound(read.json, last);
      const error = read.facts.error;
      if (!end.continues) {
        x.finish(
          round,
          error ? 'error' : 'ok',
          read.facts,
          error,
          true,
          last
            ? `the round limit (${this.loop.maxRounds}) was reached`
            : "the model also called the client's tools, or its response ended first",
        );
        if (streaming) x.endStream();
        else x.sendAnswer(res.statusCode, res.headers, json.result());
        return;
      }

      const runs = await this.runCalls(end.calls, x.metered.start.principal, x.signal);
      const done: CallsDone = { runs: new Map(runs.map((r, i) => [end.calls[i]!.id, r])), nextId: null };
      this.done.set(round.n, done);
      if (x.clientGone || x.shuttingDown) {
        x.finish(round, 'ok', read.facts, null, true, 'client gone');
        if (x.shuttingDown) x.fail(x.stopError);
        return;
      }
      const outcomes: CallOutcome[] = runs.map((r, i) => ({
        id: end.calls[i]!.id,
        text: r.text,
        isError: r.isError,
      }));
      let prepared: ReturnType<typeof prepareRound>;
      try {
        body = this.injection.followUp(body, end.turn, outcomes, round.n + 1 >= this.loop.maxRounds);
        prepared = prepareRound(x.metered.api, body, x.metered.prepared.captureOutput, x.metered.target);
      } catch (cause) {
        // A next request JSON.stringify cannot write (the model's arguments to an injected tool
        // nested ~5,000 levels deep).
        throw x.paidRoundFailed(round, read.facts, cause);
      }
      const next = x.nextRound(round, body, prepared);
      // The previous round's record links its results to the round that carries them, so the
      // next round is admitted first; its refusal is recorded and answered by the engine.
      const admitted = await x.admit(next, (ok) => {
        done.nextId = ok ? next.start.id : null;
        x.finish(round, 'ok', read.facts, null, true, ok ? 'not run' : 'refused');
      });
      if (!admitted) return;
      round = next;
    }
  }

  /** Runs a round's calls concurrently, as the user. */
  private async runCalls(
    calls: InjectedCall[],
    principal: Principal,
    signal: AbortSignal,
  ): Promise<ToolRun[]> {
    const runs = await Promise.all(calls.map((c) => this.runOne(c, principal, signal)));
    for (const r of runs)
      this.loop.metrics.injectedToolCalls.inc({
        server: r.server,
        tool: r.execution.tool,
        outcome: r.execution.outcome,
      });
    return runs;
  }

  /**
   * One call, judged first by the tool-call rules as the MCP gateway judges its calls, under every
   * name the tool goes by (the injected name the model called among them; docs/governance.md). A
   * denied call is not run: the model gets an error result saying the bridge's policy blocked it.
   */
  private async runOne(call: InjectedCall, principal: Principal, signal: AbortSignal): Promise<ToolRun> {
    const d = this.session.describe(call.name);
    const policy = d && this.loop.judge?.(principal, mcpToolNames(d.server, d.tool, call.name), call.input);
    if (!policy) return this.session.run(call, signal);
    if (policy.action === 'deny') {
      const text = blockedMessage(call.name, call.input, policy.rule);
      return { ...this.session.refuse(call, text, `denied by rule ${policy.rule}`), policy };
    }
    return { ...(await this.session.run(call, signal)), policy };
  }

  /** A round's record: injected calls marked, with how they ran and where their result went. */
  private mark(facts: ResponseFacts | null, round: Round, why: string): ResponseFacts | null {
    if (!facts) return null;
    const calls = this.done.get(round.n);
    const markOne = (tc: ToolCallRecord): ToolCallRecord => {
      const d = this.session.describe(tc.name);
      if (!d) return tc;
      const run = calls?.runs.get(tc.id);
      const execution = run?.execution ?? {
        tool: d.tool,
        outcome: 'not_run' as const,
        startedAt: round.endedAt.toISOString(),
        durationMs: 0,
        resultBytes: 0,
        error: why,
      };
      const result =
        run && calls?.nextId
          ? {
              at: new Date(Date.parse(run.execution.startedAt) + run.execution.durationMs).toISOString(),
              isError: run.isError,
              interceptionId: calls.nextId,
            }
          : tc.result;
      return {
        ...tc,
        injected: true,
        server: d.server,
        execution,
        ...(result ? { result } : {}),
        ...(run?.policy ? { policy: run.policy } : {}),
      };
    };
    return { ...facts, toolCalls: facts.toolCalls.map(markOne) };
  }
}
