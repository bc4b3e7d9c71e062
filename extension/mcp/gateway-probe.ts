import { bridgeHasGateway } from './gateway-provider';

/**
 * Whether the bridge signed in to offers the MCP gateway: asked at sign-in, and asked again each
 * time the bridge is reached while it has not been found. A sign-in restored while the bridge was
 * unreachable (VS Code started before the network) is otherwise taken as "no gateway" for the whole
 * session: VS Code lists no gateway, and the agents' gateway entries are removed and never put back.
 */
export class GatewayProbe {
  private url: string | undefined;
  private answer: Promise<boolean> = Promise.resolve(false);
  /** The last answer for the current bridge. */
  found = false;

  /**
   * `onAnswer`: a probe of the current bridge came back (the caller tells VS Code the MCP list may
   * have changed). `ask`: the probe itself (tests may pass their own).
   */
  constructor(
    private readonly onAnswer: () => void,
    private readonly ask: (url: string) => Promise<boolean> = (url) => bridgeHasGateway(url),
  ) {}

  /** The answer for the current bridge, once known (false when signed out). */
  get has(): Promise<boolean> {
    return this.answer;
  }

  /** Signed in to `url`, or out (undefined); a new bridge is asked at once, the same one is not. */
  follow(url: string | undefined): void {
    if (url === this.url) return;
    this.url = url;
    this.found = false;
    this.answer = url === undefined ? Promise.resolve(false) : this.probe(url);
  }

  /** The bridge was reached (the live feed is up). Resolves true when the gateway is newly found. */
  async reached(): Promise<boolean> {
    const url = this.url;
    if (url === undefined || this.found) return false;
    this.answer = this.probe(url);
    return (await this.answer) && this.url === url;
  }

  private probe(url: string): Promise<boolean> {
    return this.ask(url).then((yes) => {
      if (this.url !== url) return false;
      this.found = yes;
      this.onAnswer();
      return yes;
    });
  }
}
