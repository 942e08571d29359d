// A WebSocket client of PROTOCOL.md for the proxy's tests: keeps every message and the close.

import { randomBytes } from 'node:crypto';
import WebSocket from 'ws';
import { mintToken } from './tokens.ts';

export type Message = Record<string, unknown> & { type: string };

export class TestClient {
  readonly messages: Message[] = [];
  readonly raw: string[] = [];
  /** Frames that were not JSON objects with a type (a protocol violation by the proxy). */
  readonly garbage: string[] = [];
  closed: { code: number; reason: string } | undefined;
  private heartbeat: NodeJS.Timeout | undefined;
  private constructor(readonly ws: WebSocket) {
    ws.on('message', (data) => {
      const text = data.toString();
      this.raw.push(text);
      try {
        const m = JSON.parse(text) as unknown;
        if (m !== null && typeof m === 'object' && typeof (m as Message).type === 'string') this.messages.push(m as Message);
        else this.garbage.push(text);
      } catch {
        this.garbage.push(text);
      }
    });
    ws.on('close', (code, reason) => {
      this.closed = { code, reason: reason.toString() };
      clearInterval(this.heartbeat);
    });
    ws.on('error', () => {});
  }

  static async open(port: number): Promise<TestClient> {
    const ws = new WebSocket(`ws://127.0.0.1:${port}/ws`);
    const client = new TestClient(ws);
    await new Promise((resolve, reject) => ws.once('open', resolve).once('error', reject));
    return client;
  }

  /**
   * Opens, says hello with a token for `viewer` signed with `secret` (or a given token), waits
   * for welcome. It then pings every 10 s, as PROTOCOL.md asks, so it may stay open for long.
   */
  static async as(port: number, viewer: string, secret: string, options: { clientId?: string; token?: string } = {}): Promise<TestClient> {
    const c = await TestClient.open(port);
    c.send({ type: 'hello', token: options.token ?? mintToken(secret, viewer, 3_600_000), clientId: options.clientId ?? `c${randomBytes(4).toString('hex')}` });
    await c.wait((m) => m.type === 'welcome' || m.type === 'error');
    const first = c.messages.find((m) => m.type === 'welcome' || m.type === 'error');
    if (first?.type !== 'welcome') throw new Error(`no welcome for ${viewer}: ${JSON.stringify(first)}`);
    c.heartbeat = setInterval(() => c.send({ type: 'ping', t: 0 }), 10_000);
    c.heartbeat.unref();
    return c;
  }

  send(m: unknown): void {
    if (this.ws.readyState === WebSocket.OPEN) this.ws.send(typeof m === 'string' ? m : JSON.stringify(m));
  }

  get open(): boolean {
    return this.ws.readyState === WebSocket.OPEN;
  }

  async wait(match: (m: Message) => boolean, timeoutMs = 15_000): Promise<Message> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const found = this.messages.find(match);
      if (found !== undefined) return found;
      if (Date.now() > deadline) throw new Error(`no matching message in ${timeoutMs} ms; got ${JSON.stringify(this.messages.slice(-5)).slice(0, 2_000)}`);
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
  }

  async waitClosed(timeoutMs = 5_000): Promise<{ code: number; reason: string }> {
    const deadline = Date.now() + timeoutMs;
    while (this.closed === undefined) {
      if (Date.now() > deadline) throw new Error(`the connection stayed open for ${timeoutMs} ms`);
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    return this.closed;
  }

  close(): void {
    clearInterval(this.heartbeat);
    this.ws.close();
  }
}
