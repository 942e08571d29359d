// A small browser client for the adama-chain proxy (PROTOCOL.md). No framework, one file.
//
//   const client = new AdamaClient({ url: 'ws://host/ws', getToken: async () => token, clientId: 'tab-1' });
//   client.addEventListener('view', (e) => render(e.detail));     // {doc, kind, speculative, confirmed, pending}
//   client.addEventListener('ack', (e) => ...);                    // {doc, clientSeq, seq, outcome, duplicate, ms}
//   client.addEventListener('error', (e) => ...);                  // {code, message, retryable, doc, clientSeq}
//   client.addEventListener('status', (e) => ...);                 // {state: 'connecting' | 'open' | 'closed', reason}
//   client.subscribe('table-1', 'card-table');
//   await client.send('table-1', 'card-table', 'play', { card: 'QH' });
//
// It keeps the confirmed and the speculative view of every document, reconnects with backoff,
// and after a reconnect resubscribes and resends every unacknowledged message with its
// original clientSeq (the chain makes that exactly-once). With `getToken` (an async function
// returning a fresh token) it renews its token before it expires (a `reauth` on the open
// connection, at half of its remaining life) and fetches a new one for every reconnect; with
// only a fixed `token`, the connection ends when that token expires.

/** RFC 7396 merge patch. */
export function applyPatch(target, patch) {
  if (patch === null || typeof patch !== 'object' || Array.isArray(patch)) return patch;
  const out = target !== null && typeof target === 'object' && !Array.isArray(target) ? { ...target } : {};
  for (const [key, value] of Object.entries(patch)) {
    if (value === null) delete out[key];
    else out[key] = applyPatch(out[key], value);
  }
  return out;
}

function canonical(value) {
  if (value === null || typeof value !== 'object') return JSON.stringify(value);
  if (Array.isArray(value)) return `[${value.map(canonical).join(',')}]`;
  return `{${Object.keys(value)
    .filter((k) => value[k] !== null)
    .sort()
    .map((k) => `${JSON.stringify(k)}:${canonical(value[k])}`)
    .join(',')}}`;
}

export class AdamaClient extends EventTarget {
  constructor({ url, token, getToken, clientId, reconnectDelayMsMax = 2000 }) {
    super();
    this.url = url;
    this.token = token;
    this.getToken = getToken;
    this.reauths = 0;
    this.clientId = clientId;
    this.reconnectDelayMsMax = reconnectDelayMsMax;
    this.docs = new Map(); // doc -> {docType, speculative, confirmed, seq}
    this.unacked = new Map(); // clientSeq -> {message, resolve, reject, sentAt}
    this.nextSeq = Number(globalThis.sessionStorage?.getItem(`adama.seq.${clientId}`) ?? '1');
    this.state = 'closed';
    this.stopped = false;
    this.delay = 100;
    this.connect();
  }

  emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }

  async connect() {
    this.state = 'connecting';
    this.emit('status', { state: 'connecting' });
    if (this.getToken !== undefined) {
      try {
        this.token = await this.getToken();
      } catch (e) {
        this.emit('error', { code: 'token_unavailable', message: String(e), retryable: true });
        return this.reconnectLater();
      }
    }
    if (this.stopped) return;
    const ws = new WebSocket(this.url);
    this.ws = ws;
    ws.onopen = () => ws.send(JSON.stringify({ type: 'hello', token: this.token, clientId: this.clientId }));
    ws.onmessage = (event) => this.receive(JSON.parse(event.data));
    ws.onclose = (event) => {
      clearInterval(this.heartbeat);
      clearTimeout(this.refresh);
      this.state = 'closed';
      this.emit('status', { state: 'closed', reason: `${event.code} ${event.reason}` });
      // A bad or expired fixed token will not get better; with getToken the next connect fetches a fresh one.
      if (this.stopped || (event.code === 4401 && this.getToken === undefined)) return;
      this.reconnectLater();
    };
  }

  reconnectLater() {
    if (this.stopped) return;
    setTimeout(() => this.connect(), this.delay);
    this.delay = Math.min(this.delay * 2, this.reconnectDelayMsMax);
  }

  /** Renews the token at half of its remaining life (the proxy closes the connection when it expires). */
  scheduleRefresh(expiresInMs) {
    clearTimeout(this.refresh);
    if (this.getToken === undefined || typeof expiresInMs !== 'number') return;
    this.refresh = setTimeout(
      async () => {
        try {
          this.raw({ type: 'reauth', token: await this.getToken() });
        } catch (e) {
          this.emit('error', { code: 'token_unavailable', message: String(e), retryable: true });
          this.scheduleRefresh(expiresInMs / 2);
        }
      },
      Math.max(250, expiresInMs / 2),
    );
  }

  receive(m) {
    switch (m.type) {
      case 'welcome':
        this.state = 'open';
        this.delay = 100;
        this.emit('status', { state: 'open', viewer: m.viewer });
        this.scheduleRefresh(m.expiresInMs);
        this.heartbeat = setInterval(() => this.raw({ type: 'ping', t: Date.now() }), 10000);
        for (const [doc, d] of this.docs) this.raw({ type: 'subscribe', doc, docType: d.docType });
        for (const u of this.unacked.values()) this.raw(u.message);
        return;
      case 'reauthed':
        this.reauths++;
        this.emit('reauth', { viewer: m.viewer, expiresAt: m.expiresAt });
        this.scheduleRefresh(m.expiresInMs);
        return;
      case 'view': {
        const d = this.docs.get(m.doc);
        if (d === undefined) return;
        if (m.kind === 'full') {
          d.speculative = m.view;
          d.confirmed = m.confirmed;
        } else if (m.kind === 'confirmed') d.confirmed = applyPatch(d.confirmed, m.patch);
        else d.speculative = applyPatch(d.speculative, m.patch);
        d.seq = m.seq;
        this.emit('view', { doc: m.doc, kind: m.kind, seq: m.seq, speculative: d.speculative, confirmed: d.confirmed, pending: canonical(d.speculative) !== canonical(d.confirmed) });
        return;
      }
      case 'ack': {
        const u = this.unacked.get(m.clientSeq);
        if (u === undefined) return;
        this.unacked.delete(m.clientSeq);
        const detail = { doc: m.doc, clientSeq: m.clientSeq, seq: m.seq, outcome: m.outcome, duplicate: m.duplicate, ms: performance.now() - u.sentAt };
        this.emit('ack', detail);
        u.resolve(detail);
        return;
      }
      case 'error': {
        this.emit('error', m);
        if (m.code === 'bad_token' || m.code === 'expired_token') this.scheduleRefresh(2000); // a refused reauth: try again soon
        const u = m.clientSeq === undefined ? undefined : this.unacked.get(m.clientSeq);
        if (u !== undefined && !m.retryable) {
          this.unacked.delete(m.clientSeq);
          u.reject(Object.assign(new Error(m.message), { code: m.code }));
        } else if (u !== undefined) setTimeout(() => this.raw(u.message), 200); // retryable: same clientSeq
        return;
      }
      default:
    }
  }

  raw(message) {
    if (this.ws?.readyState === WebSocket.OPEN && (this.state === 'open' || message.type === 'hello')) this.ws.send(JSON.stringify(message));
  }

  subscribe(doc, docType) {
    if (!this.docs.has(doc)) this.docs.set(doc, { docType, speculative: undefined, confirmed: undefined, seq: 0 });
    this.raw({ type: 'subscribe', doc, docType });
  }

  view(doc) {
    return this.docs.get(doc);
  }

  /** Resolves with the ack once the message is committed (rejects on a definite error). */
  send(doc, docType, channel, payload) {
    const clientSeq = this.nextSeq++;
    globalThis.sessionStorage?.setItem(`adama.seq.${this.clientId}`, String(this.nextSeq));
    const message = { type: 'send', doc, docType, channel, payload, clientSeq };
    return new Promise((resolve, reject) => {
      this.unacked.set(clientSeq, { message, resolve, reject, sentAt: performance.now() });
      this.raw(message);
    });
  }

  close() {
    this.stopped = true;
    clearTimeout(this.refresh);
    this.ws?.close();
  }
}
