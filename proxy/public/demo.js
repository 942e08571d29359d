// The demo page: one pane per viewer, each its own WebSocket connection and token.

import { AdamaClient } from '/adama-client.js';

const viewers = [
  { name: 'alice', role: 'player' },
  { name: 'bob', role: 'player' },
  { name: 'carol', role: 'spectator' },
];
const panes = document.getElementById('panes');
const paths = document.querySelector('#paths tbody');
let chainMembers = [];
/** For tests and measurements: one entry per click. */
window.__timings = [];
window.__panes = {};

// This run's admin capability: the #key=... of the URL the demo printed (kept for reloads of this tab).
const adminKey = new URLSearchParams(location.hash.slice(1)).get('key') ?? sessionStorage.getItem('adama.adminKey') ?? '';
if (adminKey !== '') sessionStorage.setItem('adama.adminKey', adminKey);
history.replaceState(null, '', location.pathname + location.search);

/** An admin request: same-origin JSON with the admin key in its header. */
async function admin(path, body) {
  const res = await fetch(path, { method: 'POST', headers: { 'content-type': 'application/json', 'x-adama-admin-key': adminKey }, body: JSON.stringify(body) });
  const answer = await res.json();
  if (!res.ok) throw Object.assign(new Error(answer.message ?? answer.error), { code: answer.error, status: res.status });
  return answer;
}
window.__admin = admin;

async function token(viewer) {
  return (await admin('/api/token', { viewer })).token;
}

function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v);
  }
  for (const c of children) el.append(c);
  return el;
}

async function openPanes() {
  for (const p of Object.values(window.__panes)) p.client.close();
  window.__panes = {};
  panes.replaceChildren();
  const docType = document.getElementById('type').value;
  const doc = document.getElementById('doc').value;
  for (const v of viewers) {
    const client = new AdamaClient({ url: `ws://${location.host}/ws`, getToken: () => token(v.name), clientId: `${v.name}-${Math.random().toString(36).slice(2, 8)}` });
    const el = h('div', { class: 'pane', 'data-pane': v.name });
    panes.append(el);
    const pane = { client, el, doc, docType, viewer: v.name, view: undefined, pending: false, status: 'connecting' };
    window.__panes[v.name] = pane;
    client.addEventListener('status', (e) => {
      pane.status = e.detail.state;
      render(pane);
    });
    client.addEventListener('view', (e) => {
      pane.view = e.detail.speculative;
      pane.pending = e.detail.pending;
      const now = performance.now();
      for (const t of window.__timings) if (t.viewer === v.name && t.speculativeMs === undefined) t.speculativeMs = now - t.clickAt;
      render(pane);
    });
    client.addEventListener('ack', (e) => {
      const t = window.__timings.find((x) => x.viewer === v.name && x.clientSeq === e.detail.clientSeq && x.confirmedMs === undefined);
      if (t !== undefined) {
        t.confirmedMs = performance.now() - t.clickAt;
        t.seq = e.detail.seq;
        t.outcome = e.detail.outcome;
        addPath(t);
      }
    });
    client.addEventListener('error', (e) => console.warn(v.name, e.detail));
    client.subscribe(doc, docType);
    render(pane);
  }
}

function act(pane, channel, payload, label) {
  const t = { viewer: pane.viewer, label, clickAt: performance.now(), speculativeMs: undefined, confirmedMs: undefined, path: chainMembers.join(' > ') };
  window.__timings.push(t);
  pane.client.send(pane.doc, pane.docType, channel, payload).then(
    (ack) => (t.clientSeq = ack.clientSeq),
    (e) => (t.error = e.code),
  );
  t.clientSeq = pane.client.nextSeq - 1;
}

function addPath(t) {
  paths.prepend(
    h('tr', {}, h('td', {}, t.viewer), h('td', {}, t.label), h('td', {}, `${t.speculativeMs?.toFixed(0) ?? '-'} ms`), h('td', {}, `${t.confirmedMs.toFixed(0)} ms`), h('td', {}, `${t.path} > back`)),
  );
  while (paths.children.length > 12) paths.lastChild.remove();
}

function render(pane) {
  const { el, view, viewer } = pane;
  el.classList.toggle('pending', pane.pending);
  const title = h(
    'h2',
    {},
    `${viewer}${viewers.find((v) => v.name === viewer).role === 'spectator' ? ' (spectator)' : ''}`,
    h('span', { class: 'badge' }, pane.status !== 'open' ? pane.status : pane.pending ? 'speculative: pending' : 'confirmed'),
  );
  const body = pane.docType === 'card-table' ? renderTable(pane, view ?? {}) : renderChat(pane, view ?? {});
  el.replaceChildren(title, ...body);
}

function renderTable(pane, v) {
  const players = v.players ?? {};
  const me = players[pane.viewer];
  const hand = h('div', { class: 'hand' }, ...(me?.hand ?? []).map((card) => h('button', { 'data-card': card, onclick: () => act(pane, 'play', { card }, `play ${card}`) }, card)));
  return [
    h('div', { class: 'row' }, `phase ${v.phase ?? '?'} · round ${v.round ?? 0} · turn ${v.turn || '-'} · pot ${v.pot ?? 0} · deck ${v.deckSize ?? 0}`),
    h('div', { class: 'row' }, 'pile: ', h('span', { class: 'pile' }, (v.pile ?? []).join(' ') || '(empty)')),
    h(
      'div',
      { class: 'row' },
      'players: ',
      Object.values(players)
        .map((p) => `${p.id} (${p.chips} chips, ${v.handSizes?.[p.id] ?? '?'} cards)`)
        .join(', ') || 'none',
    ),
    h('div', { class: 'row' }, 'my hand: ', hand),
    h(
      'div',
      { class: 'row' },
      h('button', { 'data-action': 'sit', onclick: () => act(pane, 'sit', {}, 'sit') }, 'Sit'),
      h('button', { 'data-action': 'start', onclick: () => act(pane, 'start', {}, 'start') }, 'Start round'),
      h('button', { 'data-action': 'draw', onclick: () => act(pane, 'draw', {}, 'draw') }, 'Draw'),
      h('button', { 'data-action': 'bet', onclick: () => act(pane, 'bet', { amount: 10 }, 'bet 10') }, 'Bet 10'),
    ),
  ];
}

function renderChat(pane, v) {
  // The draft survives re-renders (a view arriving between typing and clicking "Say").
  const input = h('input', { size: 24, 'data-input': 'text', oninput: () => (pane.draft = input.value) });
  input.value = pane.draft ?? '';
  const messages = Object.values(v.messages ?? {})
    .sort((a, b) => a.at - b.at)
    .map((m) => h('li', {}, `${m.from}: ${m.text}`));
  const dms = Object.values(v.dms ?? {}).map((m) => h('li', {}, `(dm ${m.from} → ${m.to}) ${m.text}`));
  return [
    h('div', { class: 'row' }, `topic: ${v.topic || '-'}`),
    h('ul', { class: 'log' }, ...messages, ...dms),
    h(
      'div',
      { class: 'row' },
      input,
      h('button', { 'data-action': 'join', onclick: () => act(pane, 'join', {}, 'join') }, 'Join'),
      h('button', { 'data-action': 'say', onclick: () => act(pane, 'say', { text: input.value || 'hello' }, `say ${input.value || 'hello'}`) }, 'Say'),
    ),
  ];
}

async function refreshCluster() {
  try {
    const doc = document.getElementById('doc').value;
    const c = await (await fetch(`/api/cluster?doc=${encodeURIComponent(doc)}`)).json();
    const mine = c.chains.find((x) => x.chain === c.docChain);
    chainMembers = mine?.members ?? [];
    document
      .getElementById('cluster')
      .replaceChildren(
        h(
          'table',
          {},
          ...c.membership.map((m) =>
            h(
              'tr',
              {},
              h('td', {}, m.node),
              h('td', { class: m.state }, m.running ? m.state : 'killed'),
              h('td', {}, h('button', { 'data-kill': m.node, onclick: () => admin('/api/kill', { node: m.node }).catch((e) => console.warn(e)) }, 'kill node')),
            ),
          ),
          ...c.chains.map((x) => h('tr', {}, h('td', {}, x.chain === c.docChain ? `${x.chain} (this document)` : x.chain), h('td', { colspan: 2 }, `epoch ${x.epoch}: ${x.members.join(' > ')}`))),
        ),
      );
    document.getElementById('events').replaceChildren(...c.events.map((e) => h('li', {}, e)));
  } catch {
    // the demo server restarts: try again on the next tick
  }
}

document.getElementById('open').addEventListener('click', openPanes);
document.getElementById('type').addEventListener('change', (e) => {
  document.getElementById('doc').value = e.target.value === 'chat' ? 'room-1' : 'table-1';
});
const latency = document.getElementById('latency');
latency.addEventListener('change', async () => {
  document.getElementById('latencyMs').textContent = `${latency.value} ms`;
  await admin('/api/latency', { ms: Number(latency.value) }).catch((e) => console.warn(e));
});
setInterval(refreshCluster, 500);
refreshCluster();
if (adminKey === '') panes.textContent = "Open the URL that npm start printed: it carries this run's admin key (#key=...), without which the page cannot get its viewers' tokens.";
else openPanes();
