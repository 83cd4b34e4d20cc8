// A small GraphQL client for the settings page: queries and mutations over
// HTTP POST, and one subscription over the graphql-transport-ws protocol
// that survives dropped connections.

export class GraphQLError extends Error {
  constructor(message, code, field) {
    super(message);
    this.code = code || 'INTERNAL';
    this.field = field || null;
  }
}

function toError(e) {
  const ext = (e && e.extensions) || {};
  return new GraphQLError((e && e.message) || 'Request failed', ext.code, ext.field);
}

// request runs one query or mutation and returns its data, or throws a
// GraphQLError carrying extensions.code and extensions.field.
export async function request(token, query, variables) {
  let res;
  try {
    res = await fetch('/graphql', {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', Authorization: 'Bearer ' + token },
      body: JSON.stringify({ query, variables: variables || {} }),
    });
  } catch {
    throw new GraphQLError('The gateway cannot be reached. Check that it is running, then try again.', 'NETWORK');
  }
  let body;
  try {
    body = await res.json();
  } catch {
    throw new GraphQLError('The gateway answered HTTP ' + res.status + '.', res.status === 401 ? 'UNAUTHENTICATED' : 'NETWORK');
  }
  if (body.errors && body.errors.length) throw toError(body.errors[0]);
  return body.data;
}

// Revisions are uint64 decimal strings; compare them as BigInt.
export function rev(r) {
  try { return BigInt(r || '0'); } catch { return 0n; }
}

// Live keeps one subscription open over graphql-transport-ws. After a
// dropped connection it reconnects with exponential backoff (with jitter)
// and resubscribes with the variables variables() returns then, so the
// caller resumes from the last revision it saw. Errors with code COMPACTED
// call onCompacted (which refetches) before resubscribing.
//
// onState receives 'connecting', 'live' or 'offline' (with the delay in ms
// before the next attempt).
export class Live {
  constructor({ url, token, query, variables, onNext, onState, onCompacted, onUnauthenticated }) {
    Object.assign(this, { url, token, query, variables, onNext, onState, onCompacted, onUnauthenticated });
    this.ws = null;
    this.seq = 0;
    this.subId = null;
    this.attempt = 0;
    this.timer = null;
    this.stopped = true;
  }

  start() {
    this.stopped = false;
    this.connect();
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.timer);
    this.timer = null;
    if (this.ws) {
      const ws = this.ws;
      this.ws = null;
      ws.close(1000, 'page closed');
    }
  }

  // retryNow skips the rest of a backoff wait (e.g. when the browser says
  // it is online again).
  retryNow() {
    if (this.stopped || this.ws) return;
    clearTimeout(this.timer);
    this.timer = null;
    this.connect();
  }

  get live() {
    return !!this.ws && this.subId !== null && this.acked;
  }

  connect() {
    this.onState('connecting');
    this.acked = false;
    let ws;
    try {
      ws = new WebSocket(this.url, 'graphql-transport-ws');
    } catch {
      this.retry();
      return;
    }
    this.ws = ws;
    const send = (m) => { if (ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify(m)); };
    ws.onopen = () => send({ type: 'connection_init', payload: { authorization: 'Bearer ' + this.token } });
    ws.onmessage = async (m) => {
      if (this.ws !== ws) return;
      let msg;
      try { msg = JSON.parse(m.data); } catch { return; }
      switch (msg.type) {
        case 'connection_ack':
          this.attempt = 0;
          this.acked = true;
          this.subscribe(send);
          this.onState('live');
          break;
        case 'ping':
          send({ type: 'pong' });
          break;
        case 'next':
          if (msg.id !== this.subId) break;
          if (msg.payload && msg.payload.errors && msg.payload.errors.length) {
            await this.failed(msg.payload.errors, send);
          } else if (msg.payload && msg.payload.data) {
            this.onNext(msg.payload.data);
          }
          break;
        case 'error':
          if (msg.id === this.subId) await this.failed(msg.payload, send);
          break;
        case 'complete':
          // The server ended the subscription without an error we could
          // act on: start over on a fresh connection.
          if (msg.id === this.subId) {
            this.subId = null;
            ws.close(1000, 'resubscribe');
          }
          break;
      }
    };
    ws.onclose = (ev) => {
      if (this.ws !== ws) return;
      this.ws = null;
      this.subId = null;
      this.acked = false;
      if (this.stopped) return;
      if (ev.code === 4403 || ev.code === 4401) {
        this.stopped = true;
        this.onUnauthenticated();
        return;
      }
      this.retry();
    };
  }

  subscribe(send) {
    this.subId = String(++this.seq);
    send({ id: this.subId, type: 'subscribe', payload: { query: this.query, variables: this.variables() } });
  }

  async failed(errors, send) {
    const first = (errors && errors[0]) || {};
    const code = first.extensions && first.extensions.code;
    this.subId = null;
    if (code === 'UNAUTHENTICATED') {
      this.stop();
      this.onUnauthenticated();
      return;
    }
    if (code === 'COMPACTED') {
      try {
        await this.onCompacted();
      } catch {
        if (this.ws) this.ws.close(1000, 'refetch failed');
        return;
      }
      if (this.ws && !this.stopped) this.subscribe(send);
      return;
    }
    if (this.ws) this.ws.close(1000, 'subscription failed');
  }

  retry() {
    if (this.stopped) return;
    const base = Math.min(10000, 500 * 2 ** this.attempt);
    const delay = Math.round(base * (0.75 + Math.random() * 0.5));
    this.attempt++;
    this.onState('offline', delay);
    this.timer = setTimeout(() => { this.timer = null; this.connect(); }, delay);
  }
}
