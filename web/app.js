// reel web UI: plain DOM code, no framework, no build step. Data comes from
// the JSON API of `reel web` (docs/web.md); every string from a session is
// put into the page with textContent, never as HTML.

const ROW_H = 24;
const PAGE = 100;
const MAX_ROWS = 1000;         // rows kept (the window): the table never holds all rows
const COUNT_MAX = 10000;       // the count stops here ("10,000+") unless asked for in full

const $ = (id) => document.getElementById(id);

function el(tag, attrs = {}, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') e.className = v;
    else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else if (k === 'text') e.textContent = v;
    else e.setAttribute(k, v === true ? '' : v);
  }
  for (const k of kids.flat()) {
    if (k === null || k === undefined || k === false) continue;
    e.append(k instanceof Node ? k : document.createTextNode(String(k)));
  }
  return e;
}

class ApiError extends Error {
  constructor(status, body) {
    super(body && body.error ? body.error : 'HTTP ' + status);
    this.status = status;
    this.body = body || {};
  }
}

// The access token (docs/web.md, "Security model"). The URL reel printed
// carries it once, as ?token=: it is kept in this tab's sessionStorage,
// which belongs to this origin alone (its port included, unlike a cookie,
// which the browser would send to every server on the host), and taken out
// of the address bar and history. API requests send it as
// Authorization: Bearer, and it never goes into a URL: the requests a
// browser makes without our headers (the event stream, an image body, a
// download) carry a ticket instead (withTicket).
const TOKEN_KEY = 'reel_token';
const token = (() => {
  const u = new URL(location.href);
  const t = u.searchParams.get('token');
  if (t === null) {
    try { return sessionStorage.getItem(TOKEN_KEY) || ''; } catch (e) { return ''; }
  }
  try { sessionStorage.setItem(TOKEN_KEY, t); } catch (e) { /* this page load still has it */ }
  u.searchParams.delete('token');
  history.replaceState(history.state, '', u.pathname + u.search + u.hash);
  return t;
})();

// url with ?ticket=: a ticket asked for just now, which the server takes
// for this path only, once, within a minute (the event stream's also for
// the browser's own reconnects of that stream), so what the browser keeps
// of the URL (history, the downloads list) opens nothing afterwards.
async function withTicket(url) {
  const q = url.indexOf('?');
  const t = await api('/api/tickets', { method: 'POST', body: { path: q < 0 ? url : url.slice(0, q) } });
  return url + (q < 0 ? '?' : '&') + 'ticket=' + encodeURIComponent(t.ticket);
}

async function api(path, opts = {}) {
  // no cookies: nothing but the header authorizes
  const init = { method: opts.method || 'GET', headers: { Authorization: 'Bearer ' + token }, credentials: 'omit' };
  if (opts.body !== undefined) {
    init.body = JSON.stringify(opts.body);
    init.headers['Content-Type'] = 'application/json';
  }
  if (opts.signal) init.signal = opts.signal;
  const r = await fetch(path, init);
  const text = await r.text();
  let body = null;
  if ((r.headers.get('Content-Type') || '').startsWith('application/json')) {
    try { body = JSON.parse(text); } catch (e) { body = null; }
  } else {
    body = text;
  }
  if (!r.ok) throw new ApiError(r.status, typeof body === 'object' ? body : { error: text });
  return body;
}

const enc = encodeURIComponent;
const sessPath = (s) => '/api/sessions/' + enc(s);

function status(msg, isError) {
  const s = $('status');
  s.textContent = msg || '';
  s.classList.toggle('error', !!isError);
}

function fmtSize(n) {
  if (n === null || n === undefined) return '';
  if (n < 1024) return n + ' B';
  const u = ['KiB', 'MiB', 'GiB', 'TiB'];
  let i = -1;
  do { n /= 1024; i++; } while (n >= 1024 && i < u.length - 1);
  return n.toFixed(n < 10 ? 1 : 0) + ' ' + u[i];
}

function fmtTime(us) {
  if (!us) return '';
  const d = new Date(us / 1000);
  const p = (x, n = 2) => String(x).padStart(n, '0');
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${p(d.getHours())}:` +
    `${p(d.getMinutes())}:${p(d.getSeconds())}.${p(d.getMilliseconds(), 3)}`;
}

function fmtDur(us) {
  if (us === null || us === undefined) return '';
  if (us < 1000) return us + ' µs';
  if (us < 1e6) return (us / 1000).toFixed(us < 1e4 ? 1 : 0) + ' ms';
  return (us / 1e6).toFixed(2) + ' s';
}

function shortType(ct) {
  if (!ct) return '';
  return ct.split(';')[0].replace(/^application\//, '').replace(/^text\//, '');
}

const state = {
  info: null,      // /api/sessions answer
  session: null,
  filter: '',
  sort: 'id',
  order: 'asc',
  count: null,      // null: not counted yet
  capped: false,    // count is COUNT_MAX and more match
  exact: false,     // "count all" asked for: no cap
  pages: [],        // the window of the list loaded: [{rows, first, last}] (cursors), in order
  rows: [],         // the pages' rows, flat
  atStart: true,    // no rows before the window
  atEnd: true,      // no rows after it
  loading: null,    // the page being fetched (one at a time)
  stalled: false,   // a fetch failed: no automatic retry
  gen: 0,           // bumps when the query changes: older answers are dropped
  selected: -1,     // index in the window
  openId: null,     // flow shown in the detail pane
  detailSeq: 0,     // bumps on each openFlow call
  detailDrawn: 0,   // the call whose answer the detail shows: older answers are dropped
  checked: new Set(),
  events: null,
  follow: false,
  refreshTimer: null,
  ends: null,       // the list's first and last sort values (listEnds), for the slider
  dragging: false,  // the position slider is held
  missing: false,   // the API answered 404 for the session: nothing more is asked of it
  listError: false, // the list's first page failed (bad filter, stale token): no count shown
};

// ---------------------------------------------------------------- routing

function route() {
  const h = location.hash.replace(/^#/, '') || '/';
  const m = h.match(/^\/s\/([^/]+)(?:\/(config|flow)(?:\/(\d+))?)?$/);
  for (const v of ['sessions', 'flows', 'config']) $('view-' + v).hidden = true;
  if (!m) {
    setSession(null);
    showSessions();
    return;
  }
  const name = decodeURIComponent(m[1]);
  setSession(name);
  if (m[2] === 'config') {
    showConfig();
  } else {
    showFlows();
    if (m[2] === 'flow' && m[3]) openFlow(Number(m[3]));
    else closeDetail();
  }
}

function setSession(name) {
  if (name === state.session) return;
  state.session = name;
  state.filter = '';
  state.exact = false;
  $('filter').value = '';
  state.checked.clear();
  state.openId = null;
  state.selected = -1;
  state.missing = false;
  if (state.events) { state.events.close(); state.events = null; }
  // the old session's list requests and pending refresh are dropped: left
  // for the sessions page, they asked for /api/sessions/null/... (404)
  newQuery();
  if (state.refreshTimer) { clearTimeout(state.refreshTimer); state.refreshTimer = null; }
  $('session-name').textContent = name || '';
  for (const id of ['nav-flows', 'nav-config']) $(id).hidden = !name;
  if (name) {
    $('nav-flows').href = '#/s/' + enc(name);
    $('nav-config').href = '#/s/' + enc(name) + '/config';
    document.title = 'reel: ' + name;
    resetList();
    startEvents();
  } else {
    document.title = 'reel';
  }
}

// ---------------------------------------------------------------- sessions

// brief: only the names and which one is live (no session opened or
// counted), what start() needs to pick one without waiting for the counts.
async function loadInfo(brief) {
  state.info = await api('/api/sessions' + (brief ? '?brief=1' : ''));
  $('ro-badge').hidden = !state.info.read_only;
  document.body.classList.toggle('read-only', state.info.read_only);
  return state.info;
}

async function showSessions() {
  $('view-sessions').hidden = false;
  let info;
  try { info = await loadInfo(); } catch (e) { status(e.message, true); return; }
  const tb = $('sessions-table').tBodies[0];
  tb.replaceChildren();
  $('sessions-empty').hidden = info.sessions.length > 0;
  for (const s of info.sessions) {
    const link = el('a', { href: '#/s/' + enc(s.name), text: s.name });
    const span = s.first_us ? fmtTime(s.first_us) + ' – ' + fmtTime(s.last_us) : '';
    const st = s.error ? (s.busy ? 'busy: ' : 'unreadable: ') + s.error
      : s.recording ? 'recording' + (s.pid ? ' (pid ' + s.pid + ')' : '') : 'idle';
    const actions = el('td', { class: 'actions' });
    if (!info.read_only) {
      const renameForm = el('form', { class: 'inline', hidden: true },
        el('label', { class: 'sr', for: 'rn-' + s.name, text: 'New name for ' + s.name }),
        el('input', { id: 'rn-' + s.name, name: 'name', value: s.name, required: true }),
        el('button', { type: 'submit', text: 'Rename' }));
      renameForm.addEventListener('submit', async (ev) => {
        ev.preventDefault();
        try {
          await api(sessPath(s.name) + '/rename', { method: 'POST', body: { name: renameForm.name.value } });
          status('renamed ' + s.name + ' to ' + renameForm.name.value);
          showSessions();
        } catch (e) { status(e.message, true); }
      });
      const delForm = el('form', { class: 'inline', hidden: true },
        el('label', { for: 'del-' + s.name, text: 'Type ' + s.name + ' to delete it: ' }),
        el('input', { id: 'del-' + s.name, name: 'confirm', autocomplete: 'off', required: true }),
        el('button', { type: 'submit', class: 'danger', text: 'Delete for good' }));
      delForm.addEventListener('submit', async (ev) => {
        ev.preventDefault();
        try {
          await api(sessPath(s.name) + '/delete?confirm=' + enc(delForm.confirm.value), { method: 'POST' });
          status('deleted ' + s.name);
          showSessions();
        } catch (e) { status(e.message, true); }
      });
      // a server given SESSION names refuses a rename (the session would
      // vanish from it): not offered
      actions.append(
        info.can_rename ? el('button', { type: 'button', text: 'Rename…', onclick: () => { renameForm.hidden = !renameForm.hidden; } }) : null,
        el('button', { type: 'button', text: 'Delete…', onclick: () => { delForm.hidden = !delForm.hidden; } }),
        renameForm, delForm);
    }
    tb.append(el('tr', { class: s.live ? 'live' : null },
      el('th', { scope: 'row' }, link, s.live ? el('span', { class: 'badge', text: 'live' }) : null),
      el('td', { class: 'num', text: s.flows ?? '' }),
      el('td', { class: 'num', text: fmtSize(s.size) }),
      el('td', { text: span }),
      el('td', { text: st }),
      actions));
  }
  if (info.live && !location.hash) location.hash = '#/s/' + enc(info.live);
}

// ---------------------------------------------------------------- flow list

const COLUMNS = [
  { key: 'check', label: '', w: '28px' },
  { key: 'id', label: 'ID', sort: 'id', w: '64px', num: true },
  { key: 'time', label: 'Time', sort: 'start', w: '108px' },
  { key: 'method', label: 'Method', w: '64px' },
  { key: 'host', label: 'Host', sort: 'host', w: '1.2fr' },
  { key: 'path', label: 'Path', w: '2fr' },
  { key: 'status', label: 'Status', sort: 'status', w: '56px', num: true },
  { key: 'type', label: 'Type', w: '90px' },
  { key: 'req', label: 'Req', w: '64px', num: true },
  { key: 'resp', label: 'Resp', w: '70px', num: true },
  { key: 'dur', label: 'Duration', w: '84px', num: true },
  { key: 'proto', label: 'Protocol', w: '90px' },
  { key: 'tags', label: 'Tags', w: '0.8fr' },
  { key: 'mark', label: '★', w: '28px' },
  { key: 'notes', label: 'Notes', w: '56px', num: true },
];
const GRID = COLUMNS.map((c) => c.w.endsWith('fr') ? `minmax(60px, ${c.w})` : c.w).join(' ');

function cellText(c, r) {
  switch (c.key) {
    case 'id': return r.id;
    case 'time': return fmtTime(r.start_us).slice(11);
    case 'method': return r.method || (r.kind === 'tunnel' ? r.protocol : '');
    case 'host': return hostPort(r);
    case 'path': return r.path || '';
    case 'status': return r.error && r.status === null ? 'error' : (r.status ?? '');
    case 'type': return shortType(r.response_content_type);
    case 'req': return fmtSize(r.request_body_size);
    case 'resp': return fmtSize(r.response_body_size);
    case 'dur': return fmtDur(r.duration_us);
    case 'proto': return r.protocol;
    case 'tags': return (r.tags || []).join(' ');
    case 'mark': return r.marked ? '★' : '';
    case 'notes': return r.annotations || '';
    default: return '';
  }
}

// The Host column: host:port when the port is not the scheme's own (two
// servers on one address looked the same), as mitmweb shows it.
const DEFAULT_PORT = { http: 80, https: 443, ws: 80, wss: 443, tls: 443 };

function hostPort(r) {
  const h = r.host || '';
  if (!h || r.port === null || r.port === undefined || DEFAULT_PORT[r.scheme] === r.port) return h;
  return (h.includes(':') ? '[' + h + ']' : h) + ':' + r.port;
}

function buildHeader() {
  const th = $('thead');
  th.style.gridTemplateColumns = GRID;
  th.replaceChildren();
  COLUMNS.forEach((c, i) => {
    const sorted = c.sort && state.sort === c.sort;
    const cell = el('div', {
      role: 'columnheader', class: 'cell' + (c.num ? ' num' : ''), 'aria-colindex': i + 1,
      'aria-sort': sorted ? (state.order === 'asc' ? 'ascending' : 'descending') : (c.sort ? 'none' : null),
    });
    if (c.sort) {
      cell.append(el('button', {
        type: 'button', class: 'sort', title: 'Sort by ' + c.label,
        onclick: () => {
          if (state.sort === c.sort) state.order = state.order === 'asc' ? 'desc' : 'asc';
          else { state.sort = c.sort; state.order = 'asc'; }
          buildHeader();
          resetList();
        },
      }, c.label, sorted ? (state.order === 'asc' ? ' ▲' : ' ▼') : ''));
    } else {
      cell.textContent = c.label;
    }
    th.append(cell);
  });
}

function listBase() {
  return sessPath(state.session) + '/flows?filter=' + enc(state.filter) + '&sort=' + state.sort;
}

const flipOrder = () => (state.order === 'asc' ? 'desc' : 'asc');

// One page next to a cursor (null: from an end of the list), by keyset: an
// index seek wherever it is. forward: the rows after the cursor in the
// list's order; else the rows before it (the API answers nearest first in
// the flipped order; turned around here). first/last are the opaque
// cursors of the page's first and last rows.
async function fetchPage(cursor, forward, limit = PAGE) {
  const r = await api(listBase() + '&order=' + (forward ? state.order : flipOrder()) +
    '&limit=' + limit + (cursor ? '&cursor=' + enc(cursor) : ''), { signal: listAbort.signal });
  r.rows.forEach(plainRow);
  if (forward) return { rows: r.rows, first: r.prev, last: r.next, more: r.more };
  return { rows: r.rows.reverse(), first: r.next, last: r.prev, more: r.more };
}

// The list's requests of the current query, aborted when the query
// changes (their answers would be dropped anyway): the browser then closes
// their connections and the server stops walking for them. A body filter
// on a large session reads the spool flow by flow, and the server answers
// such requests on two threads: the filters typed before the last one
// would otherwise keep both busy until they had read everything.
let listAbort = new AbortController();

function newQuery() {
  state.gen++;
  listAbort.abort();
  listAbort = new AbortController();
}

function setRows() {
  state.rows = state.pages.flatMap((p) => p.rows);
}

function countText() {
  if (state.missing || state.listError) return '';
  if (state.count === null) {
    const n = state.rows.length;
    return state.atStart && state.atEnd ? (n === 1 ? '1 flow' : n.toLocaleString() + ' flows') : '';
  }
  const n = state.count;
  if (state.capped) return n.toLocaleString() + '+ flows';
  return n === 1 ? '1 flow' : n.toLocaleString() + ' flows';
}

// The count, capped at COUNT_MAX unless "count all" was asked for: a capped
// count costs COUNT_MAX + 1 index steps whatever the session's size.
async function refreshCount() {
  const gen = state.gen;
  try {
    const c = await api(sessPath(state.session) + '/count?filter=' + enc(state.filter) +
      (state.exact ? '' : '&max=' + COUNT_MAX), { signal: listAbort.signal });
    if (gen !== state.gen) return;
    state.count = c.count;
    state.capped = c.capped;
  } catch (e) { /* the list shows the filter's error */ }
  layout();
}

// Starts the list over at one end: the first page (last: the last page).
async function resetList(last) {
  newQuery();
  const gen = state.gen;
  state.pages = [];
  state.rows = [];
  state.atStart = true;
  state.atEnd = true;
  state.loading = null;
  state.stalled = false;
  state.count = null;
  state.listError = false;
  state.selected = -1;
  // asked before the page is touched: setting scrollTop lays the page out
  // (the first time, tens of ms), while the answer is on its way
  const pending = fetchPage(null, !last);
  $('filter-error').hidden = true;
  $('filter').removeAttribute('aria-invalid');
  $('viewport').scrollTop = 0;
  $('position').value = last ? POS_MAX : 0;
  layout();
  try {
    const p = await pending;
    if (gen !== state.gen) return;
    if (p.rows.length) state.pages = [p];
    if (last) state.atStart = !p.more; else state.atEnd = !p.more;
    setRows();
  } catch (e) {
    if (gen !== state.gen) return;
    state.listError = true; // no rows because of the error: not "0 flows"
    if (noSession(e)) sessionMissing();
    else if (e.status === 400) showFilterError(e); else status(e.message, true);
    layout();
    draw();
    return;
  }
  layout();
  if (last && state.rows.length) {
    $('viewport').scrollTop = $('viewport').scrollHeight;
    state.selected = state.rows.length - 1;
  }
  draw();
  refreshCount();
}

// ---------------------------------------------------------------- jumping
// Anywhere in a million rows without walking them: a made-up cursor just
// before the place (the API starts a page after any (sort value, id), id 0
// included), a page from there and the page before it.

const POS_MAX = 1000;             // the position slider's steps
const ID_MAX = 9007199254740991;  // past any id: (T, ID_MAX) sorts after every flow at T

const hexBytes = (bytes) => Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');

function hexUtf8(s) {
  return hexBytes(new TextEncoder().encode(s));
}

// Row text that the index holds as bytes that are not UTF-8 (a request
// target with raw bytes, say) comes as {"b64": ...}: shown here with
// U+FFFD where the bytes are not text; the host's own bytes are kept for
// its cursor, which must name the value the index sorts.
const ROW_TEXT = ['url', 'method', 'host', 'path', 'scheme', 'http_version', 'error', 'state',
  'kind', 'response_content_type'];
const b64Bytes = (b) => Uint8Array.from(atob(b), (c) => c.charCodeAt(0));
const bytesText = (v) => (v && typeof v === 'object' && typeof v.b64 === 'string'
  ? new TextDecoder().decode(b64Bytes(v.b64)) : v);

function plainRow(r) {
  if (r.host && typeof r.host === 'object' && typeof r.host.b64 === 'string') r.hostHex = hexBytes(b64Bytes(r.host.b64));
  for (const k of ROW_TEXT) r[k] = bytesText(r[k]);
  if (Array.isArray(r.tags)) r.tags = r.tags.map(bytesText);
  return r;
}

// The cursor of (row's sort value, id) in the current sort.
function cursorOf(row, id) {
  switch (state.sort) {
    case 'id': return 'i' + id;
    case 'start': return 's' + id + '.' + row.start_us;
    case 'host': return 'h' + id + '.' + (row.host === null || row.host === undefined ? '-' : row.hostHex || hexUtf8(row.host));
    default: return 't' + id + '.' + (row.status === null || row.status === undefined ? '-' : row.status);
  }
}

// The cursor just before row in the list's order: the page after it starts
// with row itself.
const cursorBefore = (row) => cursorOf(row, state.order === 'asc' ? row.id - 1 : row.id + 1);

// The sort value of the list's first and last rows (two index seeks, kept
// until the query changes), for the slider; only sorted on id or time, where
// a position between them means something.
const positional = () => state.sort === 'id' || state.sort === 'start';
const sortKey = (r) => (state.sort === 'id' ? r.id : r.start_us);

async function listEnds() {
  if (state.ends && state.ends.gen === state.gen) return state.ends;
  const gen = state.gen;
  const [a, b] = await Promise.all([fetchPage(null, true, 1), fetchPage(null, false, 1)]);
  const ends = { gen, first: a.rows[0] ? sortKey(a.rows[0]) : null, last: b.rows[0] ? sortKey(b.rows[0]) : null };
  if (gen === state.gen) state.ends = ends;
  return ends;
}

// The sort value at position f (0..1) between the ends.
function keyAt(ends, f) {
  return Math.round(ends.first + f * (ends.last - ends.first));
}

function positionLabel(key) {
  return state.sort === 'id' ? 'flow ' + key.toLocaleString() : fmtTime(key);
}

// The list from cursor on (the rows after it), with the page before it
// above; selects the row with id sel when it is there, else the first row
// after the cursor. An empty page there: the end of the list.
async function jumpTo(cursor, sel) {
  newQuery();
  const gen = state.gen;
  Object.assign(state, { pages: [], rows: [], atStart: false, atEnd: false, loading: null,
    stalled: false, selected: -1, listError: false });
  let p;
  try {
    p = await fetchPage(cursor, true);
  } catch (e) {
    if (gen === state.gen) loadFailed(gen, e);
    return;
  }
  if (gen !== state.gen) return;
  if (!p.rows.length) { await resetList(true); return; }
  state.pages = [p];
  state.atEnd = !p.more;
  setRows();
  layout();
  $('viewport').scrollTop = 0;
  await loadBefore(false);
  if (gen !== state.gen) return;
  const k = state.rows.findIndex((r) => r.id === sel);
  const i = k >= 0 ? k : state.rows.indexOf(p.rows[0]);
  state.selected = i;
  $('viewport').scrollTop = i * ROW_H;
  draw();
  refreshCount();
}

// The slider let go at value v: the row at that fraction of the sort
// values between the ends (ids, or times: a busy minute gets as much of
// the slider as a quiet one).
async function jumpToPosition(v) {
  if (!positional()) return;
  if (v <= 0) return resetList(false);
  if (v >= POS_MAX) return resetList(true);
  let ends;
  try { ends = await listEnds(); } catch (e) {
    if (e.name !== 'AbortError') status(e.message, true); // aborted: a newer query took over
    return;
  }
  if (ends.first === null) return;
  const key = keyAt(ends, v / POS_MAX);
  const asc = state.order === 'asc';
  const c = state.sort === 'id' ? 'i' + Math.max(0, asc ? key - 1 : key + 1)
    : 's' + (asc ? 0 : ID_MAX) + '.' + key;
  return jumpTo(c, null);
}

// "Go to" flow n: its row (by ~id, whatever the filter), then the list from
// just before it, and the flow opened; told when the filter leaves it out
// (the list shows where it would be, the detail shows it).
async function goToFlow(n) {
  let r;
  try {
    r = await api(sessPath(state.session) + '/flows?limit=1&filter=' + enc('~id ' + n));
  } catch (e) { status(e.message, true); return; }
  const row = r.rows[0] && plainRow(r.rows[0]);
  if (!row) { status('there is no flow ' + n, true); return; }
  await jumpTo(cursorBefore(row), n);
  if (!state.rows.some((x) => x.id === n)) status('flow ' + n + ' does not match the filter: the list shows where it would be');
  else status('');
  location.hash = '#/s/' + enc(state.session) + '/flow/' + n;
}

// Keeps the slider where the first row shown is (once the ends are known).
function showPosition() {
  const pos = $('position');
  pos.disabled = !positional();
  pos.title = pos.disabled ? 'the position works sorted by ID or Time' : '';
  if (pos.disabled || state.dragging) return;
  const ends = state.ends && state.ends.gen === state.gen ? state.ends : null;
  const r = rowAt(firstIndex());
  if (!ends || !r || ends.first === null || ends.last === ends.first) return;
  const f = (sortKey(r) - ends.first) / (ends.last - ends.first);
  pos.value = Math.round(Math.min(1, Math.max(0, f)) * POS_MAX);
}

// The API's column is 1-based in the filter's UTF-8 bytes: the characters
// before it, as code points (one caret cell each) and as the UTF-16 index
// the input's selection takes, and the UTF-16 length of the character there.
function filterColumn(f, col) {
  let bytes = 0, cells = 0, index = 0;
  for (const ch of f) {
    if (bytes >= col - 1) return { cells, index, len: ch.length };
    bytes += new TextEncoder().encode(ch).length;
    cells++;
    index += ch.length;
  }
  return { cells, index, len: 1 }; // at the end of the filter
}

function showFilterError(e) {
  const box = $('filter-error');
  box.replaceChildren();
  if (e.body && e.body.column) {
    const f = state.filter;
    const at = filterColumn(f, e.body.column);
    box.append(el('div', { class: 'mono' }, f),
      el('div', { class: 'mono caret', text: ' '.repeat(at.cells) + '^' }));
    $('filter').focus();
    try { $('filter').setSelectionRange(at.index, at.index + at.len); } catch (x) { /* ignore */ }
  }
  box.append(el('div', { text: e.message }));
  box.hidden = false;
  $('filter').setAttribute('aria-invalid', 'true');
  status('');
}

function layout() {
  $('spacer').style.height = (state.rows.length * ROW_H + 2) + 'px';
  const exact = state.count !== null && !state.capped;
  $('table').setAttribute('aria-rowcount', exact ? state.count + 1 : -1);
  $('count').textContent = countText();
  $('count-all').hidden = !(state.count !== null && state.capped);
}

// index of the first row shown for a scroll position
const HEAD_H = 28;

function firstIndex() {
  return Math.floor($('viewport').scrollTop / ROW_H);
}

function scrollToIndex(i) {
  const vp = $('viewport');
  const top = i * ROW_H;
  if (top < vp.scrollTop) vp.scrollTop = top;
  else if (top + ROW_H > vp.scrollTop + vp.clientHeight - HEAD_H) vp.scrollTop = top + ROW_H - vp.clientHeight + HEAD_H;
}

function loadFailed(gen, e) {
  if (gen !== state.gen) return;
  state.loading = null;
  state.stalled = true; // no retry loop: the next reset or live event tries again
  if (noSession(e)) sessionMissing();
  else if (e.status === 400) showFilterError(e); else { status(e.message, true); state.loadError = e.message; }
}

// A page came after one failed: its error ("Failed to fetch") is no longer
// true, unless something else has been said since.
function loadOk() {
  if (state.loadError && $('status').textContent === state.loadError) status('');
  state.loadError = null;
}

// The API's answer for a session that does not exist (a name typed or
// kept in a bookmark, a session renamed or deleted): 404 "no session 'S'".
const noSession = (e) => e instanceof ApiError && e.status === 404 && /^no session /.test(e.message);

// Says that the session does not exist, and stops asking for it: no live
// updates (the browser would not retry a 404 anyway: "retrying" was not
// true), no count ("0 flows" is not what a session that is not there has).
function sessionMissing() {
  state.missing = true;
  state.stalled = true;
  if (state.events) { state.events.close(); state.events = null; }
  if (state.refreshTimer) { clearTimeout(state.refreshTimer); state.refreshTimer = null; }
  layout();
  status("session '" + state.session + "' does not exist (see the sessions page)", true);
}

// The page after the window (force: even at the end, for new flows).
function loadAfter(force) {
  if (state.loading) return state.loading;
  if (!force && (state.atEnd || state.stalled)) return null;
  const gen = state.gen;
  const tail = state.pages[state.pages.length - 1];
  const p0 = tail ? fetchPage(tail.last, true) : fetchPage(null, true);
  state.loading = p0.then((p) => {
    if (gen !== state.gen) return;
    state.loading = null;
    state.stalled = false;
    loadOk();
    state.atEnd = !p.more;
    let dropped = 0;
    if (p.rows.length) {
      state.pages.push(p);
      // keep at most MAX_ROWS: drop pages off the top, keeping the view still
      let n = state.pages.reduce((a, x) => a + x.rows.length, 0);
      while (n > MAX_ROWS && state.pages.length > 1) {
        const d = state.pages.shift().rows.length;
        n -= d;
        dropped += d;
        state.atStart = false;
      }
    }
    const top = $('viewport').scrollTop - dropped * ROW_H;
    if (dropped && state.selected >= 0) state.selected = Math.max(-1, state.selected - dropped);
    setRows();
    layout();
    if (dropped) $('viewport').scrollTop = Math.max(0, top);
    draw();
  }).catch((e) => loadFailed(gen, e));
  return state.loading;
}

// The page before the window (force: even at the start, for new flows).
function loadBefore(force) {
  if (state.loading) return state.loading;
  if (!force && (state.atStart || state.stalled)) return null;
  if (!state.pages.length) return loadAfter(true);
  const gen = state.gen;
  state.loading = fetchPage(state.pages[0].first, false).then((p) => {
    if (gen !== state.gen) return;
    state.loading = null;
    state.stalled = false;
    loadOk();
    state.atStart = !p.more;
    const added = p.rows.length;
    if (added) {
      state.pages.unshift(p);
      let n = state.pages.reduce((a, x) => a + x.rows.length, 0);
      while (n > MAX_ROWS && state.pages.length > 1) {
        n -= state.pages.pop().rows.length;
        state.atEnd = false;
      }
      if (state.selected >= 0) state.selected += added;
    }
    const top = $('viewport').scrollTop + added * ROW_H;
    setRows();
    layout();
    if (added) $('viewport').scrollTop = top;
    draw();
  }).catch((e) => loadFailed(gen, e));
  return state.loading;
}

function rowAt(i) {
  return state.rows[i] || null;
}

function draw() {
  if ($('view-flows').hidden) return;
  const vp = $('viewport');
  const rowsEl = $('rows');
  const first = firstIndex();
  const visible = Math.ceil(vp.clientHeight / ROW_H) + 1;
  rowsEl.style.transform = `translateY(${first * ROW_H}px)`;
  const frag = document.createDocumentFragment();
  for (let i = first; i < Math.min(state.rows.length, first + visible); i++) {
    const r = rowAt(i);
    const sel = i === state.selected;
    const row = el('div', {
      role: 'row', class: 'row' + (sel ? ' selected' : '') + (r.error ? ' err' : '') +
        (r.marked ? ' marked' : '') + (state.openId === r.id ? ' open' : ''),
      'aria-selected': sel ? 'true' : 'false', 'data-index': i,
    });
    if (state.atStart) row.setAttribute('aria-rowindex', i + 2);
    row.style.gridTemplateColumns = GRID;
    row.dataset.id = r.id;
    for (const c of COLUMNS) {
      if (c.key === 'check') {
        const cb = el('input', { type: 'checkbox', 'aria-label': 'select flow ' + r.id });
        cb.checked = state.checked.has(r.id);
        cb.addEventListener('click', (ev) => {
          ev.stopPropagation();
          if (cb.checked) state.checked.add(r.id); else state.checked.delete(r.id);
          updateExportLabels();
        });
        row.append(el('div', { role: 'gridcell', class: 'cell' }, cb));
        continue;
      }
      const t = String(cellText(c, r));
      row.append(el('div', { role: 'gridcell', class: 'cell ' + c.key + (c.num ? ' num' : ''), title: t, text: t }));
    }
    row.addEventListener('click', () => { select(i); openSelected(); });
    frag.append(row);
  }
  rowsEl.replaceChildren(frag);
  showPosition();
  // near an edge of the window: the neighbouring page, by cursor
  if (first + visible > state.rows.length - PAGE / 2) loadAfter(false);
  else if (first < PAGE / 2) loadBefore(false);
}

function updateExportLabels() {
  const n = state.checked.size;
  $('export-har').textContent = n ? `Export ${n} as HAR` : 'Export HAR';
  $('export-ndjson').textContent = n ? `Export ${n} as NDJSON` : 'Export NDJSON';
}

function select(i) {
  if (!state.rows.length) return;
  state.selected = Math.max(0, Math.min(state.rows.length - 1, i));
  scrollToIndex(state.selected);
  draw();
}

function openSelected() {
  const r = state.selected >= 0 ? rowAt(state.selected) : null;
  if (r) location.hash = '#/s/' + enc(state.session) + '/flow/' + r.id;
}

// "&redact=1" when the list's "Redact secrets" box is ticked (it is at
// first, as Chrome's DevTools export a sanitized HAR unless told: an
// export is usually made to be shared).
function redactParam() {
  return $('export-redact').checked ? '&redact=1' : '';
}

// Sorted ids as the export's ids= list: runs as ranges (3-9), so that a
// selection of thousands of flows fits in a request's head.
function idRanges(ids) {
  const out = [];
  for (let i = 0; i < ids.length; i++) {
    let j = i;
    while (j + 1 < ids.length && ids[j + 1] === ids[j] + 1) j++;
    out.push(j > i ? ids[i] + '-' + ids[j] : String(ids[i]));
    i = j;
  }
  return out.join(',');
}

function exportUrl(fmt) {
  let q = 'format=' + fmt;
  if (state.checked.size) q += '&ids=' + idRanges([...state.checked].sort((a, b) => a - b));
  else q += '&filter=' + enc(state.filter);
  return sessPath(state.session) + '/export?' + q + redactParam();
}

// Downloads url (a body's bytes, an export) with a ticket of its own.
async function download(url) {
  try {
    const a = el('a', { href: await withTicket(url), download: '' });
    document.body.append(a);
    a.click();
    a.remove();
  } catch (e) { status(e.message, true); }
}

// A link that downloads url: the href shows where it leads, a click asks
// for a ticket and downloads with it.
function downloadLink(url, text) {
  return el('a', { href: url, download: '', text, onclick: (ev) => { ev.preventDefault(); download(url); } });
}

function showFlows() {
  $('view-flows').hidden = false;
  if (!$('thead').childElementCount) buildHeader();
  draw();
}

// ---------------------------------------------------------------- live

// The stream's ticket serves the browser's own reconnects too (with
// Last-Event-ID, so that no flow is missed), for a minute after each drop.
async function startEvents() {
  // stands for the stream until it is open: setSession and sessionMissing
  // close it, and then no stream is opened
  const pending = { close() {} };
  state.events = pending;
  let url;
  try {
    url = await withTicket(sessPath(state.session) + '/events');
  } catch (e) {
    if (state.events === pending) { state.events = null; status('live updates stopped: ' + e.message, true); }
    return;
  }
  if (state.events !== pending) return;
  const es = new EventSource(url);
  state.events = es;
  es.addEventListener('flow', (ev) => {
    let row;
    try { row = plainRow(JSON.parse(ev.data)); } catch (e) { return; }
    // a row not in the window may be new: ask at the list's open edge (by
    // cursor: nothing comes back when it sorts elsewhere)
    if (replaceRow(row)) draw(); else scheduleRefresh();
    if (state.openId === row.id) openFlow(row.id, true);
  });
  es.addEventListener('gone', () => { status('the session is gone', true); es.close(); });
  es.onerror = () => {
    if (state.events !== es || state.missing) return;
    if (es.readyState !== EventSource.CLOSED) { status('live updates interrupted; retrying…', true); return; }
    // an HTTP error (404: no such session) closes it for good: the browser
    // does not retry, so neither does the page say it will
    status('live updates stopped', true);
    api(sessPath(state.session) + '/count?max=1').catch((e) => {
      if (state.events === es && noSession(e)) sessionMissing();
    });
  };
  es.onopen = () => status('');
}

// New flows: fetched by cursor at the edge of the list where they sort
// (the end by id or time, the start in descending order), so the rows
// loaded stay put; the capped count is asked again. Sorted on host or
// status, a new flow may sort anywhere: the list is reloaded when all of
// it is loaded (up to MAX_ROWS), else it shows on the next reload.
function replaceRow(row) {
  let found = false;
  for (const p of state.pages) {
    const k = p.rows.findIndex((r) => r.id === row.id);
    if (k >= 0) { p.rows[k] = row; found = true; }
  }
  setRows();
  return found;
}

function scheduleRefresh() {
  if (state.refreshTimer) return;
  state.refreshTimer = setTimeout(async () => {
    state.refreshTimer = null;
    const gen = state.gen;
    try {
      if (state.loading) await state.loading;
      if (gen !== state.gen) return;
      const asc = state.order === 'asc';
      if (state.sort === 'id' || state.sort === 'start') {
        const atEdge = () => (asc ? state.atEnd : state.atStart);
        if (state.follow && !atEdge()) {
          await resetList(asc); // jump to the newest
        } else if (atEdge()) {
          // following, a burst may span pages: a few more (the rest on the next event)
          for (let k = 0; k < (state.follow ? 10 : 1) && gen === state.gen; k++) {
            await (asc ? loadAfter(true) : loadBefore(true));
            if (atEdge() || state.stalled) break;
          }
        }
      } else if (state.atStart && state.atEnd) {
        const p = await fetchPage(null, true, Math.min(1000, Math.max(PAGE, state.rows.length + PAGE)));
        if (gen !== state.gen) return;
        state.pages = p.rows.length ? [p] : [];
        state.atEnd = !p.more;
        setRows();
        layout();
      }
      if (gen !== state.gen) return;
      refreshCount();
      if (state.follow && state.rows.length) {
        const vp = $('viewport');
        const newest = state.order === 'desc' && (state.sort === 'id' || state.sort === 'start') ? 0 : state.rows.length - 1;
        vp.scrollTop = newest === 0 ? 0 : vp.scrollHeight;
        state.selected = newest;
      }
      draw();
    } catch (e) { /* the next event retries */ }
  }, 250);
}

// ---------------------------------------------------------------- detail

function closeDetail() {
  state.openId = null;
  $('detail').hidden = true;
  $('view-flows').classList.remove('with-detail');
  draw();
}

function headersTable(headers) {
  const t = el('table', { class: 'headers' });
  for (const [n, v] of headers || []) {
    const s = (x) => (typeof x === 'string' ? x : '(binary) ' + x.b64);
    t.append(el('tr', {}, el('th', { scope: 'row', text: s(n) }), el('td', { text: s(v) })));
  }
  return t;
}

const VIEWS = ['auto', 'raw', 'hex', 'json', 'xml', 'html', 'css', 'javascript', 'urlencoded',
  'multipart', 'protobuf', 'grpc', 'msgpack'];

function bodySection(id, dir, head, row) {
  const size = dir === 'request' ? row.request_body_size : row.response_body_size;
  const box = el('div', { class: 'body' });
  const base = sessPath(state.session) + '/flows/' + id + '/body/' + dir;
  const sel = el('select', { 'aria-label': dir + ' body view' },
    VIEWS.map((v) => el('option', { value: v, text: v })));
  const out = el('div', { class: 'body-out' });
  let offset = 0, part = 0;
  const load = async (more) => {
    if (!more) { offset = 0; part = 0; out.replaceChildren(); }
    try {
      const b = await api(base + '?view=' + sel.value + '&offset=' + offset);
      if (b.image && sel.value === 'auto') {
        out.replaceChildren(el('img', { src: await withTicket(base + '/raw?inline=1'), alt: dir + ' body image', class: 'img' }));
        return;
      }
      const bits = [];
      if (b.decode_error) bits.push('not decoded: ' + b.decode_error);
      if (b.read_error) bits.push(b.read_error);
      bits.push('shown as ' + b.shown + (b.content_type ? ' (' + b.content_type + ')' : ''));
      // A body longer than a part (1 MiB) comes in parts: each says which
      // bytes it holds and whether more follow. The view ends a part with
      // a note saying the same ("(cut: the view shows bytes N to M of the
      // body)"): left out here. A part of text ends on a character
      // boundary, so it may hold a few bytes less than asked for.
      let text = b.text;
      offset = b.offset;
      part++;
      if (offset > 0 || b.more) {
          text = text.replace(
              /\((cut: )?the view shows (the first \d+ bytes|bytes \d+ to \d+) of the body(, to its end)?\)\n?$/,
              '');
          bits.push('part ' + part + ': bytes ' + offset + ' to ' + (offset + b.length - 1) +
                    (b.more        ? ', more follows'
                     : b.truncated ? ', the last stored (body_limit cut the rest)'
                                   : ', the end of the body'));
      }
      out.querySelector('.more')?.remove();
      out.append(el('p', { class: 'note part', text: bits.join('; ') }),
        el('pre', { class: 'code', tabindex: 0, text }));
      if (b.more) {
        offset += b.length;
        out.append(el('button', { type: 'button', class: 'more', text: 'Next part (from byte ' + offset + ')', onclick: () => load(true) }));
      }
    } catch (e) { out.append(el('p', { class: 'error', text: e.message })); }
  };
  sel.addEventListener('change', () => load(false));
  box.append(el('div', { class: 'body-bar' },
    el('span', { text: 'Body ' + fmtSize(size) }),
    el('label', {}, 'View ', sel),
    downloadLink(base + '/raw', 'Download'),
    downloadLink(base + '/raw?decoded=0', 'Download as stored')), out);
  // what of the body was never stored: body_limit's cut, bytes capture shed
  if (head && head.body_truncated) {
    box.append(el('p', { class: 'note cut', role: 'note', text: 'cut by body_limit: ' + fmtSize(head.body_stored) +
      ' of ' + fmtSize(head.body_size) + ' stored (the rest was never recorded)' }));
  } else if (head && head.body_dropped > 0) {
    box.append(el('p', { class: 'note cut', role: 'note', text: 'not stored in full: ' + fmtSize(head.body_stored) +
      ' of ' + fmtSize(head.body_size) + ' stored (capture fell behind the disk)' }));
  }
  // a complete flow whose request never ended: the final response came
  // first (an early 413, an answer to Expect: 100-continue; docs/format.md)
  if (dir === 'request' && row && row.kind === 'http' && row.state === 'complete' &&
      row.request_end_us == null && row.status != null && row.status !== 101) {
    box.append(el('p', { class: 'note cut', role: 'note', text: 'not sent whole: the final response came ' +
      'before the request body ended, and the exchange ended with ' + fmtSize(size) + ' of it' }));
  }
  // bytes the origin sent past the end of its response (a Content-Length
  // shorter than what it sent): never passed on, but said
  if (head && head.body_excess > 0) {
    box.append(el('p', { class: 'note cut', role: 'note', text: 'the origin sent ' + fmtSize(head.body_excess) +
      ' more after the end of its response: not passed on to the client' }));
  }
  if (size > 0 || head) load(false);
  return box;
}

function messagesSection(msgs) {
  const list = el('ol', { class: 'conversation', 'aria-label': 'messages' });
  for (const m of msgs) {
    let text = '';
    if (m.data_b64 === null) text = m.data_omitted ? '(data not shown: over the page budget)' : '';
    else {
      const bytes = Uint8Array.from(atob(m.data_b64), (c) => c.charCodeAt(0));
      text = m.text ? new TextDecoder().decode(bytes) : hex(bytes.slice(0, 4096));
    }
    if (m.type === 'close') text = 'close ' + (m.close_code ?? '') + (text ? ' ' + text : '');
    list.append(el('li', { class: m.from_client ? 'client' : 'server' },
      el('div', { class: 'meta', text: (m.from_client ? 'client → server' : 'server → client') + ' · ' +
        m.type + ' · ' + fmtSize(m.length) + (m.truncated ? ' (truncated)' : '') + ' · ' + fmtTime(m.time_us) }),
      el('pre', { class: 'code', text })));
  }
  return list;
}

function hex(bytes) {
  const lines = [];
  for (let i = 0; i < bytes.length; i += 16) {
    const chunk = [...bytes.slice(i, i + 16)];
    lines.push(i.toString(16).padStart(8, '0') + '  ' +
      chunk.map((b) => b.toString(16).padStart(2, '0')).join(' ').padEnd(48) + ' ' +
      chunk.map((b) => (b >= 32 && b < 127 ? String.fromCharCode(b) : '.')).join(''));
  }
  return lines.join('\n');
}

function waterfall(t) {
  const phases = [['blocked', t.blocked_us], ['dns', t.dns_us], ['connect', t.connect_us],
    ['tls', t.ssl_us], ['send', t.send_us], ['wait', t.wait_us], ['receive', t.receive_us]];
  const total = phases.reduce((a, [, v]) => a + Math.max(0, v || 0), 0) || 1;
  const box = el('div', { class: 'waterfall', role: 'list', 'aria-label': 'timings' });
  let at = 0;
  for (const [name, v] of phases) {
    // -1: the phase did not happen (no TLS on plain HTTP, a reused
    // connection's set-up) or is not known; "0 µs" would say it did
    const happened = typeof v === 'number' && v >= 0;
    const us = happened ? v : 0;
    const bar = el('span', { class: 'bar ' + name });
    bar.style.marginLeft = (100 * at / total) + '%';
    bar.style.width = happened ? Math.max(0.5, 100 * us / total) + '%' : '0';
    box.append(el('div', { class: 'wf-row', role: 'listitem' },
      el('span', { class: 'wf-name', text: name }), el('span', { class: 'wf-track' }, bar),
      el('span', { class: 'wf-val', text: happened ? fmtDur(us) : 'none',
                   title: happened ? null : 'did not happen, or not known' })));
    at += us;
  }
  return box;
}

async function openFlow(id, refresh) {
  const pane = $('detail');
  // Opening a flow and a live update of it can overlap: the answer of an
  // older call arriving after a newer one's would draw over it and, being
  // no refresh, drop a replay's result shown meanwhile. An answer older
  // than the one drawn is dropped (not every answer but the newest call's:
  // a flow updated faster than it is fetched would never be drawn).
  const seq = ++state.detailSeq;
  if (!refresh) {
    state.openId = id;
    pane.hidden = false;
    $('view-flows').classList.add('with-detail');
    pane.replaceChildren(el('p', { text: 'Loading flow ' + id + '…' }));
  }
  let d;
  try {
    d = await api(sessPath(state.session) + '/flows/' + id);
  } catch (e) {
    if (state.openId !== id || seq < state.detailDrawn) return;
    state.detailDrawn = seq;
    if (noSession(e)) { sessionMissing(); pane.replaceChildren(el('p', { class: 'error', text: "session '" + state.session + "' does not exist" })); return; }
    pane.replaceChildren(el('p', { class: 'error', text: e.message }));
    return;
  }
  if (state.openId !== id || seq < state.detailDrawn) return;
  state.detailDrawn = seq;
  if (d.row) replaceRow(plainRow(d.row));
  // a refresh (the flow changed while open) keeps what the user asked for
  // below the actions: a replay's result, a diff, a curl command
  const keep = refresh ? [...pane.querySelectorAll(':scope > .replay-result, :scope > .diff, :scope > .curl')] : [];
  renderDetail(d, id);
  if (keep.length) pane.querySelector('.actions')?.after(...keep);
  draw();
}

function renderDetail(d, id) {
  const pane = $('detail');
  const r = d.row;
  const ro = state.info && state.info.read_only;
  const title = (r.method || r.kind) + ' ' + (r.url || r.host || '');
  const parts = [
    el('div', { class: 'detail-bar' },
      el('h2', { id: 'detail-h', text: 'Flow ' + id }),
      el('button', { type: 'button', 'aria-label': 'Close detail', text: '✕', onclick: () => { location.hash = '#/s/' + enc(state.session); } })),
    el('p', { class: 'url mono', text: title }),
    el('p', { class: 'facts', text: [r.protocol, r.state, r.status !== null ? 'status ' + r.status : null,
      fmtTime(r.start_us), r.duration_us !== null ? fmtDur(r.duration_us) : null].filter(Boolean).join(' · ') }),
  ];
  const err = d.error || r.error;
  if (err) parts.push(el('p', { class: 'error', role: 'alert', text: 'Error: ' + (typeof err === 'string' ? err : JSON.stringify(err)) }));
  if (d.read_error) parts.push(el('p', { class: 'error', text: d.read_error }));
  if (d.damage && d.damage.length) parts.push(el('p', { class: 'error', text: 'Damaged: ' + d.damage.map((x) => x.direction + ' ' + x.reason).join('; ') }));

  // actions
  const actions = el('div', { class: 'actions' });
  actions.append(el('button', { type: 'button', text: 'Copy as curl', onclick: async () => {
    try {
      const text = await api(sessPath(state.session) + '/flows/' + id + '/curl');
      try { await navigator.clipboard.writeText(text); status('curl command copied'); } catch (e) {
        status('copy failed: the command is shown below');
      }
      pane.querySelector('.curl')?.remove();
      actions.after(el('pre', { class: 'code curl', text }));
    } catch (e) { status(e.message, true); }
  } }));
  if (!ro) {
    actions.append(el('button', { type: 'button', 'aria-pressed': r.marked ? 'true' : 'false', text: r.marked ? '★ Unmark' : '☆ Mark', onclick: async () => {
      try {
        await api(sessPath(state.session) + '/marks', { method: 'POST', body: { ids: [id], mark: !r.marked } });
        afterWrite(id);
      } catch (e) { status(e.message, true); }
    } }));
  }
  // redacted or not as the list's box says when it is clicked
  const har = () => sessPath(state.session) + '/export?format=har&ids=' + id + redactParam();
  actions.append(el('a', { href: har(), download: '', text: 'HAR',
    onclick: (ev) => { ev.preventDefault(); download(har()); } }));
  const diffForm = el('form', { class: 'inline' }, el('label', { for: 'diff-with', text: 'Diff with flow' }),
    el('input', { id: 'diff-with', name: 'with', inputmode: 'numeric', size: 6, autocomplete: 'off' }),
    el('button', { type: 'submit', text: 'Diff' }));
  diffForm.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    pane.querySelector('.diff')?.remove();
    try {
      const r = await api(sessPath(state.session) + '/flows/' + id + '/diff?with=' + enc(diffForm.with.value.trim()));
      const pre = el('pre', { class: 'code diff', 'aria-label': 'diff' });
      // same: null when nothing stored differs but a body was not stored
      // whole (body_limit): as `reel diff`, never "no differences" then
      if (r.same === true) pre.append(el('span', { text: 'no differences\n' }));
      else if (r.same === null) pre.append(el('span', { text: 'no differences in what was stored, but a body was not stored whole: not known to be the same\n' }));
      for (const line of r.text ? r.text.replace(/\n$/, '').split('\n') : []) {
        const cls = line.startsWith('+') ? 'add' : line.startsWith('-') ? 'del' : line.startsWith('@@') ? 'hunk' : null;
        pre.append(el('span', { class: cls, text: line + '\n' }));
      }
      for (const note of r.notes || []) pre.append(el('span', { text: '(' + note + ')\n' }));
      actions.after(pre);
    } catch (e) { status(e.message, true); }
  });
  actions.append(diffForm);
  if (!ro && r.kind !== 'websocket' && r.kind !== 'tunnel') {
    // Replay: the server sends the request again (a child `reel replay`) and
    // answers with the new flow, which the diff form is then set to.
    const replayBtn = el('button', { type: 'button', text: 'Replay', title: 'Send this request again and record the answer as a new flow' });
    replayBtn.addEventListener('click', async () => {
      pane.querySelector('.replay-result')?.remove();
      replayBtn.disabled = true;
      replayBtn.textContent = 'Replaying…';
      const out = el('p', { class: 'replay-result', role: 'status' });
      try {
        let res;
        try {
          res = await api(sessPath(state.session) + '/flows/' + id + '/replay', { method: 'POST' });
        } catch (e) {
          if (!(e instanceof ApiError && e.body && e.body.id)) throw e;
          res = e.body; // 502: the replay failed upstream, its flow holds the error
        }
        const link = el('a', { href: '#/s/' + enc(state.session) + '/flow/' + res.id, text: 'flow ' + res.id });
        // the detail may have been drawn again meanwhile (a live update of
        // this flow): the form and the actions are the pane's current ones
        const form = () => pane.querySelector('.actions form.inline') || diffForm;
        out.append('Replayed as ', link,
          res.error ? el('span', { class: 'error', text: ' — error: ' + res.error }) : (res.status ? ' — status ' + res.status : ''), ' ',
          el('button', { type: 'button', text: 'Diff with it', onclick: () => {
            form().with.value = String(res.id);
            form().requestSubmit();
          } }));
        form().with.value = String(res.id);
        status('replayed flow ' + id + ' as flow ' + res.id);
      } catch (e) {
        out.classList.add('error');
        out.setAttribute('role', 'alert');
        out.textContent = 'Replay failed: ' + e.message;
      }
      replayBtn.disabled = false;
      replayBtn.textContent = 'Replay';
      (pane.querySelector('.actions') || actions).after(out);
    });
    actions.insertBefore(replayBtn, diffForm);
  }
  parts.push(actions);
  // flows that re-sent this one (reel replay), whenever the detail is drawn
  if (d.replayed_as && d.replayed_as.length) {
    const p = el('p', { class: 'replayed-as' }, 'Replayed as ');
    d.replayed_as.forEach((n, i) => {
      if (i) p.append(', ');
      p.append(el('a', { href: '#/s/' + enc(state.session) + '/flow/' + n, text: 'flow ' + n }));
    });
    parts.push(p);
  }

  // tags
  const tags = el('div', { class: 'tags', 'aria-label': 'tags' });
  for (const t of r.tags || []) {
    tags.append(el('span', { class: 'tag' }, t, ro ? null : el('button', { type: 'button', class: 'x', 'aria-label': 'remove tag ' + t, text: '×', onclick: async () => {
      try { await api(sessPath(state.session) + '/tags', { method: 'POST', body: { ids: [id], tags: [t], remove: true } }); afterWrite(id); } catch (e) { status(e.message, true); }
    } })));
  }
  if (!ro) {
    const f = el('form', { class: 'inline' }, el('label', { for: 'tag-input', class: 'sr', text: 'Add tag' }),
      el('input', { id: 'tag-input', name: 'tag', placeholder: 'add tag', autocomplete: 'off' }),
      el('button', { type: 'submit', text: 'Tag' }));
    f.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      const t = f.tag.value.trim();
      if (!t) return;
      try { await api(sessPath(state.session) + '/tags', { method: 'POST', body: { ids: [id], tags: [t] } }); afterWrite(id); } catch (e) { status(e.message, true); }
    });
    tags.append(f);
  }
  parts.push(el('section', { 'aria-label': 'Tags' }, el('h3', { text: 'Tags' }), tags));

  // notes
  const notes = el('div', { class: 'notes' });
  for (const n of d.notes) {
    const text = el('p', { class: 'note-text', text: n.text });
    const item = el('div', { class: 'note-item' }, el('div', { class: 'meta', text: '#' + n.id + ' · ' + fmtTime(n.created_us) }), text);
    if (!ro) {
      item.append(el('button', { type: 'button', text: 'Edit', onclick: () => {
        const ta = el('textarea', { 'aria-label': 'edit note ' + n.id, rows: 3 });
        ta.value = n.text;
        const save = el('button', { type: 'button', text: 'Save', onclick: async () => {
          try { await api(sessPath(state.session) + '/flows/' + id + '/notes/' + n.id, { method: 'PUT', body: { text: ta.value } }); afterWrite(id); } catch (e) { status(e.message, true); }
        } });
        text.replaceWith(ta);
        item.append(save);
        ta.focus();
      } }), el('button', { type: 'button', text: 'Delete', onclick: async () => {
        try { await api(sessPath(state.session) + '/flows/' + id + '/notes/' + n.id, { method: 'DELETE' }); afterWrite(id); } catch (e) { status(e.message, true); }
      } }));
    }
    notes.append(item);
  }
  if (!ro) {
    const f = el('form', { class: 'note-form' }, el('label', { for: 'note-input', text: 'Add a note' }),
      el('textarea', { id: 'note-input', name: 'text', rows: 2 }), el('button', { type: 'submit', text: 'Annotate' }));
    f.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      try {
        await api(sessPath(state.session) + '/flows/' + id + '/notes', { method: 'POST', body: { text: f.text.value } });
        status('note added');
        afterWrite(id);
      } catch (e) { status(e.message, true); }
    });
    notes.append(f);
  }
  parts.push(el('section', { 'aria-label': 'Notes' }, el('h3', { text: 'Notes' }), notes));

  for (const dir of ['request', 'response']) {
    const h = d[dir];
    if (!h && !(dir === 'request' ? r.request_body_size : r.response_body_size)) continue;
    const sec = el('section', { 'aria-label': dir, class: 'dir' }, el('h3', { text: dir === 'request' ? 'Request' : 'Response' }));
    if (dir === 'response') {
      for (const i of d.interim || []) { // 100 Continue, 103 Early Hints
        const il = [i.http_version, i.status, typeof i.reason === 'string' ? i.reason : ''].join(' ') + ' (interim)';
        sec.append(el('p', { class: 'mono', text: il }), headersTable(i.headers));
      }
    }
    if (h) {
      // HTTP/2 names scheme and authority in pseudo-header fields, not in a
      // Host field: the absolute form shows them, as `reel flow` does; so
      // does a request its client sent in absolute form (to a proxy)
      const h2 = dir === 'request' && typeof h.http_version === 'string' && h.http_version.startsWith('HTTP/2') &&
        !(h.headers || []).some(([n]) => typeof n === 'string' && n.toLowerCase() === 'host') && typeof h.url === 'string' && h.host;
      const abs = h2 || (dir === 'request' && h.absolute_form === true && typeof h.url === 'string' && h.host);
      // a CONNECT (or a SOCKS5 request, tcp://) names its authority, as `reel flow` shows it
      const authority = dir === 'request' && (h.method === 'CONNECT' || h.scheme === 'tcp') && !h.target &&
        typeof h.host === 'string' && h.host
        ? (h.host.includes(':') ? '[' + h.host + ']' : h.host) + ':' + h.port : null;
      const line = dir === 'request'
        ? [h.method, authority || (abs ? h.url : h.target), h.http_version].map((x) => (typeof x === 'string' ? x : '')).join(' ')
        : [h.http_version, h.status, typeof h.reason === 'string' ? h.reason : ''].join(' ') +
          (typeof h.local_file === 'string' ? ` (generated by reel from ${h.local_file}: map_local, no origin asked)`
            : typeof h.blocked_by === 'string' ? ` (generated by reel: block_list rule ${h.blocked_by}, no origin asked)`
            : h.generated ? ' (generated by reel)' : '');
      sec.append(el('p', { class: 'mono', text: line }), headersTable(h.headers));
      // modify_body: what its rules did to this body (the one shown is as it
      // came: the client's request, the origin's response; the other side
      // got it changed)
      const be = d[dir + '_body_edit'];
      if (be && typeof be === 'object') {
        const rules = (be.rules || []).join(', ');
        const [who, from] = dir === 'request' ? ['the origin', 'client'] : ['the client', 'origin'];
        sec.append(el('p', { class: 'note', text: typeof be.not_applied === 'string'
          ? `modify_body: ${rules} not applied (${be.not_applied}): ${who} got the body as it came`
          : `modify_body: ${be.replacements} replacement(s) by ${rules}; ${who} got ${be.sent_size} bytes` +
            (be.decoded ? ', decoded from its Content-Encoding' : '') +
            (be.answered_continue === true ? '; reel answered its Expect: 100-continue itself' : '') +
            ` (the body below is the ${from}'s)` }));
        // the body as it went, when the record kept it
        if (typeof be.sent_body_b64 === 'string' && be.sent_body_b64) {
          const bytes = b64Bytes(be.sent_body_b64);
          let text;
          try { text = new TextDecoder('utf-8', { fatal: true }).decode(bytes); } catch { text = hex(bytes.slice(0, 4096)); }
          sec.append(el('details', { class: 'sent-body' },
            el('summary', { text: `The body ${who} got` + (be.sent_body_truncated ? ` (its first ${fmtSize(bytes.length)}: the record keeps no more)` : '') }),
            el('pre', { class: 'code', text })));
        }
      }
      // modify_headers' changes: the fields above are as they came
      if (Array.isArray(h.modified) && h.modified.length) {
        sec.append(el('h4', { text: `Changed by modify_headers in the ${dir} reel sent on` }),
          headersTable(h.modified.map((e) => [e.name, (e.value === null ? '(removed)'
            : typeof e.value === 'string' ? e.value : '(binary) ' + e.value.b64) +
            (typeof e.rule === 'string' ? ` (rule ${e.rule})` : '')])));
      }
    }
    if (!(r.kind === 'websocket' || r.kind === 'tunnel')) sec.append(bodySection(id, dir, h, r));
    const tr = d[dir + '_trailers'];
    if (tr && tr.length) {
      // an HTTP/2 client's trailers after a content-length body never reached the origin
      const held = d[dir + '_trailers_not_passed_on'] === true;
      sec.append(el('h4', { text: held ? 'Trailers (not passed on: the HTTP/1.1 request reel made has no place for them)' : 'Trailers' }), headersTable(tr));
    }
    parts.push(sec);
  }
  if (d.messages && d.messages.length) {
    const more = d.messages_omitted ? ` (first ${d.messages.length} of ${d.messages.length + d.messages_omitted})` : ` (${d.messages.length})`;
    parts.push(el('section', { 'aria-label': 'Messages' }, el('h3', { text: 'Messages' + more }), messagesSection(d.messages)));
  }
  if (d.timings) parts.push(el('section', { 'aria-label': 'Timings' }, el('h3', { text: 'Timings' }), waterfall(d.timings)));
  if (d.server_conn) {
    const sc = d.server_conn;
    const dl = el('dl', { class: 'kv' });
    // a certificate not enforced (upstream_cert_verify was off) is said
    // (not the reverse: a session older than the field cannot tell), with
    // what the check found if it would have failed, and one that failed
    // the check, with what it said
    const facts = sc.verify_error
      ? `${sc.verify_error}; ${sc.peer_cert || 'the certificate could not be read'}` : '';
    const cert = sc.unverified     ? 'NOT verified (upstream_cert_verify was off)' +
                                       (facts ? `; it would have FAILED: ${facts}` : '')
                 : sc.verify_error ? `verify FAILED: ${facts}`
                                   : null;
    // what setting the connection up took, said for every flow on it (its
    // timings count it only for the flow it was opened for); not known in
    // sessions older than the fields
    const setup = typeof sc.opened_us === 'number' && sc.opened_us > 0
      ? [['dns', sc.dns_us], ['connect', sc.connect_us], ['TLS', sc.ssl_us]]
          .filter(([, v]) => typeof v === 'number' && v >= 0).map(([n, v]) => `${n} ${fmtDur(v)}`)
          .concat([`begun ${fmtTime(sc.opened_us)}`]).join(', ')
      : null;
    // through an upstream proxy (upstream_proxy): address is the proxy's
    const via = !sc.via ? null
      : sc.via_forward ? `the upstream proxy ${sc.via}, which the request went to as it came (absolute form, no CONNECT)`
      : `the upstream proxy ${sc.via}, a ${sc.via.startsWith('socks5') ? 'SOCKS5' : 'CONNECT'} tunnel to the origin`;
    // map_remote sent the request to another URL than its client's
    const mapped = d.request && typeof d.request.mapped_to === 'string' ? `${d.request.mapped_to} (map_remote)` : null;
    // the connection came transparently (redirected to reel by the OS)
    const orig = d.request && typeof d.request.original_dst === 'string'
      ? `${d.request.original_dst} (transparent: where the client connected, redirected to reel by the OS)` : null;
    for (const [k, v] of [['sent to', mapped], ['original destination', orig], ['address', sc.address], ['through', via], ['DNS override', typeof sc.dns_override === 'string' ? `${sc.dns_override} (dns_overrides: the address not from DNS)` : null], ['TLS', sc.tls_version], ['certificate', cert], ['SNI', sc.sni], ['ALPN', sc.alpn], ['cipher', sc.cipher],
      ['TLS session', sc.tls_version ? (sc.resumed ? 'resumed (from an earlier connection)' : 'new') : null],
      ['client certificate', sc.client_cert_asked ? (sc.client_cert ? `asked for: reel presented ${sc.client_cert}` : 'asked for: reel had none') : null],
      ['reused', sc.reused ? 'yes' : 'no'], ['retried', sc.retried ? (!sc.address ? 'yes: the new connection could not be made'
        : r.scheme === 'https' && sc.ssl_us < 0 ? 'yes: the new connection\'s TLS handshake failed' : 'yes') : 'no'], ['set up', setup], ['client', r.client_addr]]) {
      if (v === null || v === undefined) continue;
      dl.append(el('dt', { text: k }), el('dd', { text: v }));
    }
    parts.push(el('section', { 'aria-label': 'Upstream connection' }, el('h3', { text: 'Upstream connection' }), dl));
  }
  if (d.client_tls) {
    // the TLS between the client and reel (an intercepted connection)
    const ct = d.client_tls;
    const dl = el('dl', { class: 'kv' });
    for (const [k, v] of [['TLS', ct.tls_version], ['cipher', ct.cipher], ['SNI', ct.sni || 'none'], ['ALPN', ct.alpn || 'none'],
      ['resumed', ct.resumed ? 'yes' : 'no']]) {
      if (typeof v !== 'string') continue;
      dl.append(el('dt', { text: k }), el('dd', { text: v }));
    }
    parts.push(el('section', { 'aria-label': 'Client TLS' }, el('h3', { text: 'Client TLS' }), dl));
  }
  pane.replaceChildren(...parts);
  pane.setAttribute('aria-labelledby', 'detail-h');
}

async function afterWrite(id) {
  // the row changed: the detail brings its new copy for the list
  await openFlow(id, true);
  draw();
}

// ---------------------------------------------------------------- config

async function showConfig() {
  $('view-config').hidden = false;
  const tb = $('config-table').tBodies[0];
  let cfg;
  try { cfg = await api(sessPath(state.session) + '/config'); } catch (e) { status(e.message, true); return; }
  const ro = state.info && state.info.read_only;
  $('config-note').textContent = cfg.recording_pid
    ? `A proxy (pid ${cfg.recording_pid}) records into this session: hot options apply within a second, the others at its next start.`
    : 'Changes are saved in the session overlay and apply when it is next recorded into.';
  tb.replaceChildren();
  for (const o of cfg.options) {
    const input = el('input', { id: 'cfg-' + o.name, name: o.name, value: o.value, 'aria-describedby': 'cfg-help-' + o.name + ' cfg-err-' + o.name, disabled: ro });
    const err = el('div', { id: 'cfg-err-' + o.name, class: 'error', role: 'alert' });
    const layer = el('td', { class: 'layer ' + o.layer, text: o.layer });
    const save = async (value) => {
      err.textContent = '';
      try {
        const r = await api(sessPath(state.session) + '/config', { method: 'POST', body: { name: o.name, value } });
        // what GET now shows: an unset falls back to the user file's value,
        // not always the default
        input.value = r.effective;
        layer.textContent = r.layer;
        layer.className = 'layer ' + r.layer;
        if (r.layer === 'cli') {
          // the running proxy's --set (or listen address) beats the overlay until it stops
          status(o.name + (r.value === null ? ' unset' : ' = ' + r.value) + ' in the overlay; the proxy keeps ' + r.effective + ' (its command line) until it stops');
          return;
        }
        // an option the running proxy reads only when it starts says so
        status(o.name + (r.value === null ? ' unset' : ' = ' + r.value) + (r.note ? '; ' + r.note : ''));
      } catch (e) { err.textContent = e.message; input.setAttribute('aria-invalid', 'true'); }
    };
    const form = el('form', { class: 'inline' }, el('label', { for: 'cfg-' + o.name, class: 'sr', text: o.name }), input,
      ro ? null : el('button', { type: 'submit', text: 'Set' }), err);
    form.addEventListener('submit', (ev) => { ev.preventDefault(); input.removeAttribute('aria-invalid'); save(input.value); });
    tb.append(el('tr', {}, el('th', { scope: 'row', class: 'mono', text: o.name }), el('td', {}, form), layer,
      el('td', { id: 'cfg-help-' + o.name }, el('div', { text: o.help }), el('div', { class: 'note', text: o.accepts })),
      el('td', {}, ro ? null : el('button', { type: 'button', text: 'Unset', onclick: () => save(null) }))));
  }
}

// ---------------------------------------------------------------- wiring

function wire() {
  $('filter-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    state.filter = $('filter').value.trim();
    state.checked.clear();
    state.exact = false;
    updateExportLabels();
    resetList();
  });
  $('go-first').addEventListener('click', () => resetList(false));
  $('go-last').addEventListener('click', () => resetList(true));
  $('count-all').addEventListener('click', () => { state.exact = true; refreshCount(); });
  const pos = $('position');
  pos.max = POS_MAX;
  pos.addEventListener('input', async () => {
    state.dragging = true;
    const v = Number(pos.value);
    try {
      const ends = await listEnds();
      if (ends.first !== null && state.dragging) $('position-to').textContent = '→ ' + positionLabel(keyAt(ends, v / POS_MAX));
    } catch (e) { /* shown when it is let go */ }
  });
  pos.addEventListener('change', () => {
    state.dragging = false;
    $('position-to').textContent = '';
    jumpToPosition(Number(pos.value));
  });
  $('goto-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    const n = Number($('goto').value);
    if (Number.isInteger(n) && n >= 1) goToFlow(n);
    else status('go to: a flow number', true);
  });
  $('follow').addEventListener('change', (ev) => {
    state.follow = ev.target.checked;
    if (state.follow) scheduleRefresh();
  });
  $('export-har').addEventListener('click', () => download(exportUrl('har')));
  $('export-ndjson').addEventListener('click', () => download(exportUrl('ndjson')));
  let raf = 0;
  $('viewport').addEventListener('scroll', () => {
    if (raf) return;
    raf = requestAnimationFrame(() => { raf = 0; draw(); });
  });
  window.addEventListener('resize', () => draw());
  document.addEventListener('keydown', (ev) => {
    const t = ev.target;
    const typing = t instanceof HTMLInputElement || t instanceof HTMLTextAreaElement || t instanceof HTMLSelectElement;
    // Escape leaves the filter or the Go to box for the list (a second one
    // closes the open flow)
    if (ev.key === 'Escape' && (t === $('filter') || t === $('goto'))) { t.blur(); $('table').focus(); return; }
    if (typing || $('view-flows').hidden || ev.ctrlKey || ev.metaKey || ev.altKey) return;
    if (ev.key === '/') { ev.preventDefault(); $('filter').focus(); $('filter').select(); }
    else if (ev.key === 'g') { ev.preventDefault(); $('goto').focus(); $('goto').select(); }
    else if (ev.key === 'j' || ev.key === 'ArrowDown') { ev.preventDefault(); select(state.selected + 1); }
    else if (ev.key === 'k' || ev.key === 'ArrowUp') { ev.preventDefault(); select(state.selected - 1); }
    else if (ev.key === 'PageDown') { ev.preventDefault(); select(state.selected + Math.floor($('viewport').clientHeight / ROW_H) - 1); }
    else if (ev.key === 'PageUp') { ev.preventDefault(); select(Math.max(0, state.selected - Math.floor($('viewport').clientHeight / ROW_H) + 1)); }
    else if (ev.key === 'Home') { ev.preventDefault(); resetList(false); }
    else if (ev.key === 'End') { ev.preventDefault(); resetList(true); }
    else if (ev.key === 'Enter') { ev.preventDefault(); openSelected(); }
    else if (ev.key === 'Escape' && state.openId !== null) { location.hash = '#/s/' + enc(state.session); }
  });
  window.addEventListener('hashchange', route);
}

async function start() {
  wire();
  // a session named in the address: its list is asked for at once, beside
  // the brief list of sessions
  if (!token) {
    status('no access token: open the URL that reel printed (it carries the token)', true);
    return;
  }
  const named = !!location.hash;
  if (named) route();
  try { await loadInfo(true); } catch (e) { status(e.message, true); return; }
  if (named) {
    // a flow opened before the answer was drawn as if writable: again, now
    // that the read-only state is known
    if (state.info.read_only && state.openId !== null) openFlow(state.openId, true);
    return;
  }
  if (state.info.live) location.hash = '#/s/' + enc(state.info.live);
  else if (state.info.sessions.length === 1) location.hash = '#/s/' + enc(state.info.sessions[0].name);
  route();
}

start();
