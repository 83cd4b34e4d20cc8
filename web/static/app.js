// The live settings page. Everything it shows comes from the API: badges,
// actions, messages and warnings are rendered as given, never recomputed.
import { request, rev, Live, GraphQLError } from './gql.js';

const TOKEN_KEY = 'switchboard.token';

const SECTIONS = [
  { category: 'CRM', title: 'CRM', intro: 'One CRM per workspace. Deals, contacts and accounts sync between bont and your CRM.' },
  { category: 'EMAIL_CALENDAR', title: 'Personal Integrations', intro: 'Your own email and calendar. Only you see these cards.' },
  { category: 'MESSAGING', title: 'Workflows & Notifications', intro: 'Where bont sends workflow messages and notifications.' },
  { category: 'OTHER', title: 'Other integrations', intro: 'Further apps connected to this workspace.' },
];

const LOCATIONS = {
  CRM: 'Settings → Integrations → CRM',
  EMAIL_CALENDAR: 'Personal Integrations',
  MESSAGING: 'Settings → App Settings → Workflows & Notifications',
  OTHER: 'Settings → Integrations',
};

const CARD = `
  id category status statusReason statusMessage revision
  provider { id name }
  badge { label tone }
  actions
  account { id name email }
  accountHistory { account { id name email } from until }
  missingScopes
  settings { key value }
  disconnectWarning
  connectedAt
`;

const LOAD = `query Settings {
  providers { id name category settingsLocation available unavailableReason settingDefinitions { key label type options default } }
  integrations { ${CARD} }
}`;
const INTEGRATIONS = `query Integrations { integrations { ${CARD} } }`;
const EVENTS = `subscription Events($after: Revision) {
  integrationEvents(afterRevision: $after) { revision at kind previousStatus integration { ${CARD} } }
}`;
const CONNECT = `mutation Connect($input: ConnectIntegrationInput!) {
  connectIntegration(input: $input) { authorizationUrl integration { ${CARD} } }
}`;
const RECONNECT = `mutation Reconnect($input: ReconnectIntegrationInput!) {
  reconnectIntegration(input: $input) { authorizationUrl integration { ${CARD} } }
}`;
const DISCONNECT = `mutation Disconnect($id: ID!) {
  disconnectIntegration(input: { id: $id, confirm: true }) { ${CARD} }
}`;
const CONFIGURE = `mutation Configure($input: ConfigureIntegrationInput!) {
  configureIntegration(input: $input) { ${CARD} }
}`;

const ACTION_LABELS = { CONNECT: 'Connect', RECONNECT: 'Reconnect', CONFIGURE: 'Configure', DISCONNECT: 'Disconnect' };
const KIND_TEXT = {
  CREATED: 'card created',
  CONNECTED: 'connected',
  RECONNECTED: 'reconnected',
  ACCOUNT_CHANGED: 'account changed',
  RECONNECT_REQUIRED: 'needs to be reconnected',
  ERROR: 'has an error',
  RECOVERED: 'recovered',
  CONFIGURED: 'settings changed',
  DISCONNECTED: 'disconnected',
  SYNCED: 'synced',
};

const $ = (sel) => document.querySelector(sel);

const state = {
  token: null,
  providers: [],
  integrations: new Map(), // id → integration
  lastRevision: 0n, // the newest revision this page holds
  pending: new Map(), // provider id → { popup, timer }
  activity: [], // newest first
  live: null,
};

// ---------- small DOM helpers ----------

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === 'class') el.className = v;
    else if (k === 'text') el.textContent = v;
    else if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else el.setAttribute(k, v === true ? '' : v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

function accountText(a) {
  if (!a) return '';
  if (a.name && a.email) return `${a.name} (${a.email})`;
  return a.name || a.email || a.id;
}

function accountShort(a) {
  return (a && (a.name || a.email || a.id)) || 'unknown account';
}

function formatTime(t) {
  if (!t) return '';
  const d = new Date(t);
  return d.toLocaleString(undefined, { dateStyle: 'medium', timeStyle: 'short' });
}

function initials(name) {
  const words = String(name).replace(/[^\p{L}\p{N} ]/gu, ' ').split(/\s+/).filter(Boolean);
  if (words.length === 0) return '?';
  if (words.length === 1) return words[0].slice(0, 2).toUpperCase();
  return (words[0][0] + words[1][0]).toUpperCase();
}

// A stable hue per provider, so each logo mark keeps its colour.
function hue(id) {
  let x = 0;
  for (const ch of String(id)) x = (x * 31 + ch.codePointAt(0)) % 360;
  return x;
}

function logo(provider) {
  const el = h('span', { class: 'logo', 'aria-hidden': 'true' }, initials(provider.name));
  // Through the CSSOM: the page's CSP allows no inline style attributes.
  el.style.setProperty('--hue', String(hue(provider.id)));
  return el;
}

function badge(b) {
  // The label is always written out; the tone only adds colour.
  const el = h('span', { class: 'badge', dataset: { tone: b ? b.tone : 'NONE' } });
  if (b) el.append(h('span', { class: 'badge-dot', 'aria-hidden': 'true' }), h('span', { class: 'badge-label', text: b.label }));
  return el;
}

// ---------- notices ----------

function notify(text, tone) {
  const n = $('#notice');
  n.dataset.tone = tone || 'info';
  n.querySelector('.notice-text').textContent = text;
  n.hidden = false;
}

function clearNotice() {
  $('#notice').hidden = true;
}

// ---------- connection indicator ----------

function setConn(s, delay) {
  const el = $('#conn');
  el.dataset.state = s;
  const text = el.querySelector('.conn-text');
  if (s === 'live') text.textContent = 'Live';
  else if (s === 'connecting') text.textContent = 'Connecting…';
  else if (s === 'offline') text.textContent = `Offline — retrying in ${Math.max(1, Math.round((delay || 0) / 1000))} s`;
  else text.textContent = 'Not signed in';
  document.body.dataset.conn = s;
}

// ---------- state ----------

function holdRevision(r) {
  const v = rev(r);
  if (v > state.lastRevision) state.lastRevision = v;
  document.body.dataset.revision = String(state.lastRevision);
}

// upsert keeps the newest state of an integration; an older one (a late
// mutation answer after a newer event) is ignored.
function upsert(integration) {
  const cur = state.integrations.get(integration.id);
  if (cur && rev(cur.revision) >= rev(integration.revision)) return false;
  state.integrations.set(integration.id, integration);
  holdRevision(integration.revision);
  return true;
}

function replaceAll(list) {
  state.integrations = new Map();
  for (const i of list) upsert(i);
}

function providerById(id) {
  return state.providers.find((p) => p.id === id);
}

// ---------- rendering ----------

function render() {
  // Re-rendering replaces nodes: keep keyboard focus on the same control.
  const focusKey = document.activeElement && document.activeElement.dataset ? document.activeElement.dataset.focusKey : null;
  const root = $('#surfaces');
  root.replaceChildren(...SECTIONS.map(renderSection));
  root.setAttribute('aria-busy', 'false');
  renderActivity();
  if (focusKey) {
    const again = root.querySelector(`[data-focus-key="${CSS.escape(focusKey)}"]`);
    if (again && !again.disabled) again.focus();
  }
}

function renderSection(sec) {
  const providers = state.providers.filter((p) => p.category === sec.category);
  const location = (providers[0] && providers[0].settingsLocation) || LOCATIONS[sec.category];
  const el = h('section', { class: 'surface', id: 'surface-' + sec.category, 'aria-labelledby': 'title-' + sec.category, dataset: { category: sec.category } },
    h('div', { class: 'surface-head' },
      h('h2', { id: 'title-' + sec.category, text: sec.title }),
      h('p', { class: 'location', text: location })),
    h('p', { class: 'muted intro', text: sec.intro }));

  if (providers.length === 0) {
    el.append(h('p', { class: 'empty', text: 'No providers of this kind are set up on this gateway.' }));
    return el;
  }
  // Every provider unavailable for one and the same reason: that is the
  // plan (or the whole category is unconfigured). Say it once, show no cards.
  const reasons = new Set(providers.map((p) => (p.available ? null : p.unavailableReason)));
  if (reasons.size === 1 && !reasons.has(null)) {
    el.dataset.unavailable = 'true';
    el.append(h('p', { class: 'plan-note', role: 'note', text: [...reasons][0] }));
    return el;
  }

  const mine = [...state.integrations.values()].filter((i) => i.category === sec.category);
  if (sec.category === 'CRM') {
    // One CRM per workspace: its card while connected, the grid otherwise.
    const active = mine.find((i) => i.status !== 'DISCONNECTED');
    if (active) {
      el.append(h('div', { class: 'cards single' }, renderCard(active, providerById(active.provider.id), true)));
    } else {
      el.append(h('p', { class: 'grid-hint', text: 'Choose your CRM.' }),
        h('div', { class: 'cards grid', dataset: { testid: 'crm-grid' } },
          providers.map((p) => renderEmpty(p, mine.find((i) => i.provider.id === p.id)))));
    }
    return el;
  }
  el.append(h('div', { class: 'cards grid' }, providers.map((p) => {
    const i = mine.find((x) => x.provider.id === p.id);
    return i && i.status !== 'DISCONNECTED' ? renderCard(i, p, false) : renderEmpty(p, i);
  })));
  return el;
}

// renderEmpty is a provider without a live connection: a Connect button,
// or why it cannot be connected.
function renderEmpty(p, integration) {
  const pending = state.pending.has(p.id);
  const card = h('article', { class: 'card empty-card', dataset: { provider: p.id, status: integration ? integration.status : 'NONE' }, 'aria-label': p.name },
    h('div', { class: 'card-head compact' }, logo(p),
      h('div', { class: 'card-title' }, h('h3', { text: p.name }), integration ? badge(integration.badge) : null)));
  const body = h('div', { class: 'card-body' });
  if (!p.available) {
    body.append(h('p', { class: 'unavailable' }, h('strong', { text: 'Not available. ' }), p.unavailableReason || ''));
    card.dataset.unavailable = 'true';
  } else if (pending) {
    body.append(h('p', { class: 'pending', role: 'status', text: `Finish signing in to ${p.name} in the window that opened.` }));
  } else if (!integration) {
    body.append(h('p', { class: 'muted', text: 'Not connected.' }));
  }
  card.append(body);
  // A card from the API says what the viewer may do; without one, a
  // configured provider can be connected.
  const actions = integration ? integration.actions : p.available ? ['CONNECT'] : [];
  card.append(renderActions(actions, { provider: p, integration, pending, crm: false }));
  return card;
}

function renderCard(i, p, crm) {
  p = p || { id: i.provider.id, name: i.provider.name, settingDefinitions: [] };
  const pending = state.pending.has(p.id);
  const card = h('article', { class: 'card', dataset: { provider: p.id, integration: i.id, status: i.status, revision: i.revision }, 'aria-label': p.name },
    h('div', { class: 'card-head' }, logo(p),
      h('div', { class: 'card-title' },
        h('h3', { text: p.name }),
        h('p', { class: 'account', dataset: { testid: 'account' } }, i.account ? ['Connected as ', h('strong', { text: accountText(i.account) })] : 'No account')),
      badge(i.badge)));

  const body = h('div', { class: 'card-body' });
  const change = identityChange(i);
  if (change) {
    body.append(h('p', { class: 'identity', role: 'note', dataset: { testid: 'identity-change' } },
      h('span', { class: 'identity-label', text: 'Identity changed:' }),
      h('span', { class: 'identity-from', text: accountShort(change.from) }),
      h('span', { class: 'arrow', 'aria-label': 'to', text: '→' }),
      h('span', { class: 'identity-to', text: accountShort(change.to) }),
      h('span', { class: 'muted identity-note', text: `Since ${formatTime(change.at)}, what was attributed to ${accountShort(change.from)} lives under ${accountShort(change.to)}.` })));
  }
  if (i.status !== 'CONNECTED' && i.statusMessage) {
    body.append(h('p', { class: 'status-message', dataset: { tone: i.badge.tone, testid: 'status-message' }, text: i.statusMessage }));
  }
  if (pending) {
    body.append(h('p', { class: 'pending', role: 'status', text: `Finish signing in to ${p.name} in the window that opened.` }));
  }
  if (i.connectedAt) body.append(h('p', { class: 'meta', text: `Connected since ${formatTime(i.connectedAt)}` }));
  card.append(body, renderActions(i.actions, { provider: p, integration: i, pending, crm }));
  return card;
}

// identityChange reports a handover between accounts without a disconnect
// in between (a reconnect as another account): the previous period ended
// when the current one began.
function identityChange(i) {
  const h = i.accountHistory || [];
  if (h.length < 2 || !i.account) return null;
  const prev = h[h.length - 2];
  const cur = h[h.length - 1];
  if (cur.until || !prev.until || prev.account.id === cur.account.id) return null;
  if (new Date(prev.until).getTime() !== new Date(cur.from).getTime()) return null;
  return { from: prev.account, to: cur.account, at: cur.from };
}

function renderActions(actions, ctx) {
  const bar = h('div', { class: 'actions' });
  const key = ctx.provider.id;
  for (const a of actions) {
    let label = ACTION_LABELS[a] || a;
    if (a === 'DISCONNECT' && ctx.crm) label = 'Disconnect CRM Integration';
    const cls = a === 'CONNECT' || a === 'RECONNECT' ? 'btn btn-primary' : a === 'DISCONNECT' ? 'btn btn-danger-quiet' : 'btn';
    bar.append(h('button', {
      type: 'button', class: cls, disabled: ctx.pending,
      dataset: { action: a, focusKey: `${key}:${a}` },
      'aria-label': `${label} ${ctx.crm && a === 'DISCONNECT' ? '' : ctx.provider.name}`.trim(),
      onclick: (ev) => act(a, ctx, ev.currentTarget),
    }, label));
  }
  if (ctx.crm && actions.includes('DISCONNECT')) bar.classList.add('crm-actions');
  return bar;
}

function renderActivity() {
  const box = $('#activity');
  const list = $('#activity-list');
  box.hidden = state.activity.length === 0;
  list.replaceChildren(...state.activity.map((e) => h('li', { dataset: { kind: e.kind, revision: e.revision } },
    h('time', { datetime: e.at, text: new Date(e.at).toLocaleTimeString() }),
    h('span', { text: `${e.name} ${KIND_TEXT[e.kind] || e.kind.toLowerCase()}${e.detail ? ' — ' + e.detail : ''}` }))));
}

// ---------- actions ----------

function act(action, ctx, button) {
  clearNotice();
  if (action === 'CONNECT') return authorize('connect', ctx);
  if (action === 'RECONNECT') return authorize('reconnect', ctx);
  if (action === 'DISCONNECT') return openDisconnect(ctx, button);
  if (action === 'CONFIGURE') return openConfigure(ctx, button);
}

// authorize opens the provider's sign-in in a popup (the OAuth window). The
// window is opened before the mutation so the browser counts it as the
// click's; if it is blocked, the whole page goes to the provider and the
// callback brings it back here (returnTo).
async function authorize(kind, ctx) {
  const p = ctx.provider;
  const popup = window.open('', 'switchboard-oauth', 'popup,width=520,height=700');
  if (popup) {
    try {
      popup.document.title = `Opening ${p.name}…`;
      popup.document.body.textContent = `Opening ${p.name}…`;
      popup.document.body.style.font = '16px system-ui, sans-serif';
      popup.document.body.style.padding = '2rem';
    } catch { /* not ours to style */ }
  }
  const input = kind === 'connect' ? { provider: p.id } : { id: ctx.integration.id };
  if (!popup) input.returnTo = location.origin + '/settings';
  try {
    const data = await request(state.token, kind === 'connect' ? CONNECT : RECONNECT, { input });
    const payload = kind === 'connect' ? data.connectIntegration : data.reconnectIntegration;
    upsert(payload.integration);
    if (!popup) {
      location.assign(payload.authorizationUrl);
      return;
    }
    popup.location.href = payload.authorizationUrl;
    popup.focus();
    watchPopup(p.id, popup);
  } catch (e) {
    if (popup) popup.close();
    failed(e, `${p.name} could not be ${kind === 'connect' ? 'connected' : 'reconnected'}`);
  }
  render();
}

function watchPopup(providerId, popup) {
  stopWatching(providerId);
  const timer = setInterval(() => {
    if (popup.closed) {
      stopWatching(providerId);
      render();
    }
  }, 500);
  state.pending.set(providerId, { popup, timer });
}

function stopWatching(providerId) {
  const w = state.pending.get(providerId);
  if (w) clearInterval(w.timer);
  state.pending.delete(providerId);
}

// The OAuth window's last page tells us how it went (same origin only).
window.addEventListener('message', (e) => {
  if (e.origin !== location.origin || !e.data || e.data.type !== 'switchboard:oauth') return;
  const i = state.integrations.get(e.data.integration);
  if (i) stopWatching(i.provider.id);
  if (!e.data.ok) {
    notify('The sign-in did not complete; the window that opened says why. Nothing changed.', 'danger');
  } else if (!state.live || !state.live.live) {
    // The card normally changes from the subscription; while offline,
    // fetch it so the page is right at once.
    refetch().catch(() => {});
  }
  render();
});

function failed(e, what) {
  if (e instanceof GraphQLError && e.code === 'UNAUTHENTICATED') return signOut('Your session ended. Sign in again.');
  notify(`${what}: ${e.message}`, 'danger');
}

let dialogReturnFocus = null;

function openDisconnect(ctx, button) {
  const d = $('#disconnect-dialog');
  const i = ctx.integration;
  $('#disconnect-title').textContent = `Disconnect ${ctx.provider.name}?`;
  $('#disconnect-warning').textContent = i.disconnectWarning;
  $('#disconnect-confirm').textContent = ctx.crm ? 'Disconnect CRM Integration' : 'Disconnect';
  d.returnValue = '';
  dialogReturnFocus = button;
  d.onclose = async () => {
    if (d.returnValue !== 'confirm') return restoreFocus();
    try {
      const data = await request(state.token, DISCONNECT, { id: i.id });
      upsert(data.disconnectIntegration);
      notify(`${ctx.provider.name} is disconnected. Data already synced stays in bont.`, 'info');
    } catch (e) {
      failed(e, `${ctx.provider.name} could not be disconnected`);
    }
    render();
    const next = document.querySelector(`[data-provider="${CSS.escape(ctx.provider.id)}"] button`);
    if (next) next.focus();
  };
  d.showModal();
}

function restoreFocus() {
  if (dialogReturnFocus && document.contains(dialogReturnFocus)) dialogReturnFocus.focus();
  else if (dialogReturnFocus && dialogReturnFocus.dataset.focusKey) {
    const again = document.querySelector(`[data-focus-key="${CSS.escape(dialogReturnFocus.dataset.focusKey)}"]`);
    if (again) again.focus();
  }
  dialogReturnFocus = null;
}

function openConfigure(ctx, button) {
  const d = $('#configure-dialog');
  const i = ctx.integration;
  const defs = (ctx.provider.settingDefinitions || []);
  const values = Object.fromEntries((i.settings || []).map((s) => [s.key, s.value]));
  $('#configure-title').textContent = `${ctx.provider.name} settings`;
  $('#configure-error').textContent = '';
  const fields = defs.map((def) => settingField(def, values[def.key] ?? def.default));
  $('#configure-fields').replaceChildren(...(fields.length ? fields : [h('p', { class: 'muted', text: 'This provider has no settings.' })]));
  dialogReturnFocus = button;
  const form = $('#configure-form');
  form.onsubmit = async (ev) => {
    ev.preventDefault();
    for (const el of form.querySelectorAll('[aria-invalid]')) el.removeAttribute('aria-invalid');
    for (const el of form.querySelectorAll('.field .field-error')) el.textContent = '';
    $('#configure-error').textContent = '';
    const settings = defs.map((def) => {
      const el = form.elements['setting-' + def.key];
      return { key: def.key, value: def.type === 'BOOLEAN' ? String(el.checked) : el.value.trim() };
    });
    const save = $('#configure-save');
    save.disabled = true;
    try {
      const current = state.integrations.get(i.id) || i;
      const data = await request(state.token, CONFIGURE, { input: { id: i.id, settings, expectedRevision: current.revision } });
      upsert(data.configureIntegration);
      d.close();
      restoreFocus();
      notify(`${ctx.provider.name} settings saved.`, 'info');
      render();
    } catch (e) {
      if (e instanceof GraphQLError && e.code === 'UNAUTHENTICATED') { d.close(); return failed(e, ''); }
      const el = e.field && form.elements['setting-' + e.field];
      if (el) {
        el.setAttribute('aria-invalid', 'true');
        form.querySelector(`#error-${CSS.escape(e.field)}`).textContent = e.message;
        el.focus();
      } else if (e.code === 'CONFLICT') {
        $('#configure-error').textContent = `${e.message} Close this form and open it again to see the current settings.`;
      } else {
        $('#configure-error').textContent = e.message;
      }
    } finally {
      save.disabled = false;
    }
  };
  $('#configure-cancel').onclick = () => { d.close(); restoreFocus(); };
  d.onclose = () => {};
  d.onkeydown = null;
  d.showModal();
}

function settingField(def, value) {
  const id = 'setting-' + def.key;
  const errId = 'error-' + def.key;
  let input;
  if (def.type === 'BOOLEAN') {
    input = h('input', { type: 'checkbox', id, name: id, 'aria-describedby': errId });
    input.checked = value === 'true';
    return h('div', { class: 'field field-check', dataset: { key: def.key } },
      h('label', { for: id }, input, h('span', { text: def.label })),
      h('p', { class: 'field-error', id: errId, role: 'alert' }));
  }
  if (def.type === 'ENUM') {
    input = h('select', { id, name: id, 'aria-describedby': errId }, def.options.map((o) => h('option', { value: o, text: o })));
    input.value = value;
  } else {
    input = h('input', { type: def.type === 'INTEGER' ? 'number' : 'text', id, name: id, value, 'aria-describedby': errId, inputmode: def.type === 'INTEGER' ? 'numeric' : null });
  }
  return h('div', { class: 'field', dataset: { key: def.key } },
    h('label', { for: id, text: def.label }), input,
    h('p', { class: 'field-error', id: errId, role: 'alert' }));
}

// ---------- live events ----------

function onEvent(data) {
  const e = data.integrationEvents;
  if (!e) return;
  holdRevision(e.revision);
  const changed = upsert(e.integration);
  const i = e.integration;
  if (i.status !== 'DISCONNECTED' || e.kind === 'DISCONNECTED') stopWatching(i.provider.id);
  if (e.kind !== 'CREATED') {
    let detail = '';
    if (e.kind === 'ACCOUNT_CHANGED') {
      const c = identityChange(i);
      if (c) detail = `${accountShort(c.from)} → ${accountShort(c.to)}`;
    } else if ((e.kind === 'CONNECTED' || e.kind === 'RECONNECTED') && i.account) {
      detail = accountText(i.account);
    } else if (i.status !== 'CONNECTED' && i.statusMessage && e.kind !== 'DISCONNECTED') {
      detail = i.statusMessage;
    }
    state.activity.unshift({ revision: e.revision, at: e.at, kind: e.kind, name: i.provider.name, detail });
    state.activity.length = Math.min(state.activity.length, 8);
  }
  if (changed || e.kind !== 'CREATED') render();
}

async function refetch() {
  const data = await request(state.token, INTEGRATIONS);
  replaceAll(data.integrations);
  render();
}

function startLive() {
  const proto = location.protocol === 'https:' ? 'wss:' : 'ws:';
  state.live = new Live({
    url: `${proto}//${location.host}/graphql`,
    token: state.token,
    query: EVENTS,
    // Resume from the newest revision held: every later change has a
    // higher one, so nothing is missed and nothing repeats.
    variables: () => ({ after: String(state.lastRevision) }),
    onNext: onEvent,
    onState: setConn,
    onCompacted: async () => {
      await refetch();
      notify('The page was offline for a long time and has been refreshed.', 'info');
    },
    onUnauthenticated: () => signOut('Your session ended. Sign in again.'),
  });
  state.live.start();
}

window.addEventListener('online', () => state.live && state.live.retryNow());

// ---------- signing in ----------

function showSignin(message, isError) {
  if (state.live) state.live.stop();
  state.live = null;
  setConn('idle');
  $('#surfaces').replaceChildren();
  $('#activity').hidden = true;
  $('#signout').hidden = true;
  $('#signin').hidden = false;
  const dev = document.body.dataset.dev === 'true';
  const hint = dev ? ` In dev mode the startup output prints a sign-in link; the demo token is also in ${document.body.dataset.tokenFile}.` : '';
  $('#signin-message').textContent = (message && !isError ? message + ' ' : '') + 'Paste an API token of this workspace. It is kept in this browser tab only and sent to this gateway only.' + hint;
  $('#signin-error').textContent = isError ? message : '';
  $('#signin-token').focus();
}

function signOut(message) {
  sessionStorage.removeItem(TOKEN_KEY);
  state.token = null;
  state.integrations = new Map();
  state.lastRevision = 0n;
  state.activity = [];
  showSignin(message, true);
}

$('#signin-form').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  const token = $('#signin-token').value.trim();
  if (!token) return;
  $('#signin-token').value = '';
  await start(token);
});

$('#signout').addEventListener('click', () => {
  signOut('');
  $('#signin-error').textContent = '';
});

$('#notice .notice-close').addEventListener('click', clearNotice);

// A dev-mode sign-in link carries a one-time code; trade it for the token
// and drop it from the address bar at once.
async function redeemCode(code) {
  history.replaceState(null, '', '/settings');
  const res = await fetch('/settings/signin', {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ code }),
  });
  const body = await res.json().catch(() => ({}));
  if (!res.ok || !body.token) throw new Error(body.message || 'The sign-in link did not work.');
  return body.token;
}

async function start(token) {
  let data;
  try {
    data = await request(token, LOAD);
  } catch (e) {
    if (e.code === 'UNAUTHENTICATED') return signOut('That token is not valid for this gateway.');
    $('#surfaces').setAttribute('aria-busy', 'false');
    notify(e.message, 'danger');
    return;
  }
  state.token = token;
  sessionStorage.setItem(TOKEN_KEY, token);
  $('#signin').hidden = true;
  $('#signout').hidden = false;
  state.providers = data.providers;
  replaceAll(data.integrations);
  render();
  announceReturn();
  startLive();
}

// After a full-page OAuth redirect (popup blocked) the callback sends the
// browser back with ?integration=&status=.
function announceReturn() {
  const q = new URLSearchParams(location.search);
  const id = q.get('integration');
  if (!id) return;
  history.replaceState(null, '', '/settings');
  const i = state.integrations.get(id);
  if (i) notify(`${i.provider.name}: ${i.badge.label}.`, i.status === 'CONNECTED' ? 'info' : 'danger');
}

async function main() {
  const q = new URLSearchParams(location.search);
  const code = location.pathname === '/settings/signin' && q.get('code');
  if (code) {
    try {
      const token = await redeemCode(code);
      return start(token);
    } catch (e) {
      return showSignin(e.message, true);
    }
  }
  const token = sessionStorage.getItem(TOKEN_KEY);
  if (token) return start(token);
  showSignin('', false);
}

main();
