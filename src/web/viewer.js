// The stream viewer: the backlog and then live lines over the websocket watch, rendered
// virtually (the DOM holds only the rows on screen), older ranges loaded through Get as the
// user scrolls up. See docs/WEB.md.
import { parse, render, PLAIN } from "./ansi.js";
import { apiFetch, token, streamLength } from "./common.js";

const TAIL = 2000; // entries asked for when the viewer opens (watch tail=N)
const PAGE = 1000; // entries per older page
const OVERSCAN = 30;

const m = location.pathname.match(/^\/logs\/([^/]+)\/(.+)$/);
const project = decodeURIComponent(m[1]);
const path = m[2].split("/").map(decodeURIComponent).join("/");
// The path is used in API URLs and sent with the viewer's token: it must be a stream
// path by the naming rules (so "..", "%2F" tricks and the like never reach a request).
const SEGMENT = /^[A-Za-z0-9][A-Za-z0-9:_.-]*$/;
function validStreamPath(p) {
  const at = p.indexOf("/+/");
  if (at < 0) return false;
  const halves = [p.slice(0, at), p.slice(at + 3)];
  return halves.every((h) => h.length > 0 && h.length <= 4096 && h.split("/").every((s) => SEGMENT.test(s)));
}
const validPath = /^[a-z][a-z0-9_-]{0,99}$/.test(project) && validStreamPath(path);
const api = `/api/v1/projects/${encodeURIComponent(project)}`;
const $ = (id) => document.getElementById(id);

const v = {
  lines: [], // {no, text, runs, plain, t, idx, open}
  firstIndex: null, // entry index of the first loaded entry
  nextIndex: 0, // next entry index expected from the websocket
  following: true,
  wrap: false,
  ts: "off",
  descriptor: null,
  state: null,
  ended: false,
  loadingOlder: false,
  selection: null, // [from, to] line numbers
  search: { query: "", matches: [], current: -1 },
  tops: null, // prefix sums of row heights when wrapping
  cols: 0,
  lineHeight: 18,
  reconnects: 0,
  drawTimes: [], // the last 1,000 redraws, in ms (for the benchmark and the curious)
  firstPaint: null, // ms after navigation when the first lines were drawn
};
window.__viewer = v; // for tests and the curious

const scroller = $("scroller"), spacer = $("spacer"), rows = $("rows");

function descriptorTime() {
  return v.descriptor ? Date.parse(v.descriptor.timestamp) : 0;
}

// Turns entries into lines. A line whose delimiter is empty continues in the next one.
function toLines(entries, startStyle, continuing) {
  const out = [];
  let style = startStyle;
  let open = continuing;
  for (const e of entries) {
    if (e.text) {
      e.text.lines.forEach((l, k) => {
        const value = typeof l === "string" ? l : l.value;
        const delim = typeof l === "string" ? "\n" : l.delimiter;
        if (open && out.length) {
          const last = out[out.length - 1];
          last.text += value;
          const p = parse(last.text, last.style0);
          last.runs = p.runs;
          style = p.style;
        } else {
          const p = parse(value, style);
          out.push({ no: e.sequence + k + 1, text: value, runs: p.runs, style0: style, t: e.time_offset, idx: e.stream_index });
          style = p.style;
        }
        open = delim === "";
      });
    } else {
      const kind = e.binary ? "binary" : "datagram";
      const size = atob((e.binary || e.datagram).data).length;
      out.push({ no: e.stream_index + 1, text: `[${kind} entry ${e.stream_index}: ${size} bytes]`, runs: [{ text: `[${kind} entry ${e.stream_index}: ${size} bytes]`, style: PLAIN }], style0: PLAIN, t: e.time_offset, idx: e.stream_index, note: true });
    }
  }
  for (const l of out) l.plain = l.runs.map((r) => r.text).join("");
  return { lines: out, style, open };
}

let endStyle = PLAIN, endOpen = false;

function appendEntries(entries) {
  entries = entries.filter((e) => e.stream_index >= v.nextIndex);
  if (!entries.length) return;
  if (v.firstIndex === null) v.firstIndex = entries[0].stream_index;
  v.nextIndex = entries[entries.length - 1].stream_index + 1;
  if (endOpen && v.lines.length) {
    // the last line continues: re-parse it with its continuation
    const last = v.lines.pop();
    const first = entries[0];
    const res = toLines([{ ...first, text: { lines: [{ value: last.text, delimiter: "" }, ...first.text.lines] }, sequence: last.no - 1 }, ...entries.slice(1)], last.style0, false);
    res.lines[0].t = last.t; res.lines[0].idx = last.idx;
    v.lines.push(...res.lines);
    endStyle = res.style; endOpen = res.open;
  } else {
    const res = toLines(entries, endStyle, false);
    v.lines.push(...res.lines);
    endStyle = res.style; endOpen = res.open;
  }
  v.tops = null;
  refreshSearch(false);
  layout();
  if (v.following) scrollToBottom();
  else render_();
}

async function loadOlder() {
  if (v.loadingOlder || v.firstIndex === null || v.firstIndex === 0) return;
  v.loadingOlder = true;
  try {
    const from = Math.max(0, v.firstIndex - PAGE);
    const res = await apiFetch(`${api}/logs/${path}?index=${from}&count=${v.firstIndex - from}`);
    const entries = res.entries.filter((e) => e.stream_index < v.firstIndex);
    if (!entries.length) { v.firstIndex = 0; return; }
    const older = toLines(entries, PLAIN, false).lines;
    const before = totalHeight();
    const top = scroller.scrollTop;
    v.lines.unshift(...older);
    v.firstIndex = entries[0].stream_index;
    v.tops = null;
    if (v.selection || v.search.query) refreshSearch(false);
    layout();
    scroller.scrollTop = top + (totalHeight() - before);
    render_();
  } catch (e) {
    showError(`loading older lines: ${e.message}`);
  } finally {
    v.loadingOlder = false;
  }
}

// Row heights: one line each, or when wrapping as many rows as the text needs.
function measure() {
  const probe = document.createElement("span");
  probe.textContent = "0".repeat(100);
  probe.style.cssText = "position:absolute;visibility:hidden;white-space:pre";
  rows.appendChild(probe);
  const charWidth = probe.getBoundingClientRect().width / 100 || 8;
  rows.removeChild(probe);
  const lh = parseFloat(getComputedStyle(document.documentElement).getPropertyValue("--line-height")) || 18;
  v.lineHeight = lh;
  const gutter = charWidth * 9 + (v.ts === "off" ? 0 : charWidth * 15) + 4;
  v.cols = Math.max(10, Math.floor((scroller.clientWidth - gutter) / charWidth));
}

function computeTops() {
  if (!v.wrap) { v.tops = null; return; }
  const tops = new Float64Array(v.lines.length + 1);
  for (let i = 0; i < v.lines.length; i++) {
    const n = Math.max(1, Math.ceil(v.lines[i].plain.length / v.cols));
    tops[i + 1] = tops[i] + n * v.lineHeight;
  }
  v.tops = tops;
}

function top(i) { return v.wrap ? v.tops[i] : i * v.lineHeight; }
function totalHeight() { return top(v.lines.length); }

function indexAt(y) {
  if (!v.wrap) return Math.max(0, Math.min(v.lines.length - 1, Math.floor(y / v.lineHeight)));
  let lo = 0, hi = v.lines.length;
  while (lo < hi) { const mid = (lo + hi) >> 1; if (v.tops[mid + 1] <= y) lo = mid + 1; else hi = mid; }
  return Math.min(lo, Math.max(0, v.lines.length - 1));
}

function layout() {
  if (v.wrap && (!v.tops || v.tops.length !== v.lines.length + 1)) computeTops();
  spacer.style.height = `${totalHeight()}px`;
}

function scrollToBottom() {
  scroller.scrollTop = scroller.scrollHeight;
  render_();
}

function timeText(l) {
  if (v.ts === "rel") return `+${l.t.toFixed(3)}s`;
  const d = new Date(descriptorTime() + l.t * 1000);
  const p = (n, w = 2) => String(n).padStart(w, "0");
  return `${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}.${p(d.getMilliseconds(), 3)}`;
}

let scheduled = false;
function render_() {
  if (scheduled) return;
  scheduled = true;
  requestAnimationFrame(() => {
    scheduled = false;
    const t0 = performance.now();
    draw();
    const t1 = performance.now();
    if (v.drawTimes.length >= 1000) v.drawTimes.shift();
    v.drawTimes.push(t1 - t0);
    if (v.firstPaint === null && v.lines.length) v.firstPaint = t1;
  });
}

function draw() {
  if (!v.lines.length) { rows.replaceChildren(); return; }
  const y0 = scroller.scrollTop, y1 = y0 + scroller.clientHeight;
  const first = Math.max(0, indexAt(y0) - OVERSCAN);
  const last = Math.min(v.lines.length - 1, indexAt(y1) + OVERSCAN);
  const frag = document.createDocumentFragment();
  const current = v.search.matches[v.search.current];
  const matchSet = v.search.set;
  for (let i = first; i <= last; i++) {
    const l = v.lines[i];
    const row = document.createElement("div");
    row.className = "line";
    if (l.note) row.classList.add("note");
    if (v.selection && l.no >= v.selection[0] && l.no <= v.selection[1]) row.classList.add("selected");
    if (matchSet && matchSet.has(i)) row.classList.add("match");
    if (current === i) row.classList.add("current");
    row.dataset.no = l.no;
    const ln = document.createElement("a");
    ln.className = "ln";
    ln.href = `#L${l.no}`;
    ln.textContent = l.no;
    row.appendChild(ln);
    if (v.ts !== "off") {
      const ts = document.createElement("span");
      ts.className = "ts";
      ts.textContent = timeText(l);
      row.appendChild(ts);
    }
    const tx = document.createElement("span");
    tx.className = "tx";
    render(tx, l.runs);
    row.appendChild(tx);
    frag.appendChild(row);
  }
  rows.style.top = `${top(first)}px`;
  rows.replaceChildren(frag);
}

scroller.addEventListener("scroll", () => {
  const atBottom = scroller.scrollTop + scroller.clientHeight >= scroller.scrollHeight - v.lineHeight;
  v.following = atBottom;
  $("jump").hidden = atBottom;
  if (scroller.scrollTop < v.lineHeight * 20) loadOlder();
  render_();
});

$("jump").addEventListener("click", () => { v.following = true; $("jump").hidden = true; scrollToBottom(); });

// Line links: click selects a line, shift-click a range; the URL keeps it (#L10-L20).
rows.addEventListener("click", (ev) => {
  const ln = ev.target.closest(".ln");
  if (!ln) return;
  ev.preventDefault();
  const no = Number(ln.parentElement.dataset.no);
  if (ev.shiftKey && v.selection) {
    const a = v.selection[0];
    v.selection = [Math.min(a, no), Math.max(a, no)];
  } else {
    v.selection = [no, no];
  }
  const [a, b] = v.selection;
  history.replaceState(null, "", a === b ? `#L${a}` : `#L${a}-L${b}`);
  render_();
});

function scrollToLine(i) {
  const y = top(i) - scroller.clientHeight / 3;
  v.following = false;
  $("jump").hidden = false;
  scroller.scrollTop = Math.max(0, y);
  render_();
}

// Search within the loaded lines.
function refreshSearch(jump) {
  const q = v.search.query.toLowerCase();
  if (!q) { v.search.matches = []; v.search.set = null; v.search.current = -1; $("count").textContent = ""; return; }
  const matches = [];
  for (let i = 0; i < v.lines.length; i++) if (v.lines[i].plain.toLowerCase().includes(q)) matches.push(i);
  v.search.matches = matches;
  v.search.set = new Set(matches);
  if (v.search.current >= matches.length) v.search.current = matches.length - 1;
  if (jump) {
    v.search.current = matches.length ? 0 : -1;
    if (matches.length) scrollToLine(matches[0]);
  }
  updateCount();
}

function updateCount() {
  const n = v.search.matches.length;
  $("count").textContent = n ? `${v.search.current + 1}/${n}` : "0/0";
}

function step(d) {
  const n = v.search.matches.length;
  if (!n) return;
  v.search.current = (v.search.current + d + n) % n;
  scrollToLine(v.search.matches[v.search.current]);
  updateCount();
}

let searchTimer;
$("search").addEventListener("input", (e) => {
  clearTimeout(searchTimer);
  searchTimer = setTimeout(() => { v.search.query = e.target.value; refreshSearch(true); render_(); }, 120);
});
$("search").addEventListener("keydown", (e) => {
  if (e.key === "Enter") {
    e.preventDefault();
    if (v.search.query !== e.target.value) { v.search.query = e.target.value; refreshSearch(true); render_(); return; }
    step(e.shiftKey ? -1 : 1);
  }
});
$("next").addEventListener("click", () => step(1));
$("prev").addEventListener("click", () => step(-1));

$("ts").addEventListener("change", (e) => { v.ts = e.target.value; measure(); v.tops = null; layout(); render_(); });
$("wrap").addEventListener("change", (e) => {
  v.wrap = e.target.checked;
  scroller.classList.toggle("wrap", v.wrap);
  measure(); v.tops = null; layout();
  if (v.following) scrollToBottom(); else render_();
});
window.addEventListener("resize", () => { measure(); v.tops = null; layout(); render_(); });
$("info-toggle").addEventListener("click", () => { $("info").hidden = !$("info").hidden; });

function showError(msg) {
  const el = $("error");
  el.textContent = msg;
  el.hidden = false;
}

function showState(stream) {
  v.state = stream.state;
  v.descriptor = stream.descriptor;
  const badge = $("status");
  badge.textContent = stream.state.status;
  badge.className = `badge ${stream.state.status}`;
  const d = stream.descriptor;
  const rowsMeta = [
    ["project", stream.project], ["path", stream.path], ["type", d.stream_type],
    ["content type", d.content_type], ["timestamp", d.timestamp],
    ["length", streamLength(stream)],
    ["entries", String(stream.state.next_index)],
    ["terminal index", String(stream.state.terminal_index)],
    ["archival", stream.state.archival],
    ...Object.entries(d.tags || {}).map(([k, val]) => [`tag ${k}`, val]),
  ];
  const dl = $("meta");
  dl.replaceChildren();
  for (const [k, val] of rowsMeta) {
    const dt = document.createElement("dt"); dt.textContent = k;
    const dd = document.createElement("dd"); dd.textContent = val;
    dd.dataset.key = k;
    dl.append(dt, dd);
  }
}

// The websocket: the first connection asks for the tail (or a permalink's range), later
// ones resume exactly where the last one stopped.
function connect(query) {
  const proto = location.protocol === "https:" ? "wss" : "ws";
  let url = `${proto}://${location.host}${api}/watch/${path}?${query}`;
  const t = token();
  if (t) url += `&access_token=${encodeURIComponent(t)}`;
  const ws = new WebSocket(url);
  let opened = false;
  ws.onopen = () => { opened = true; $("conn").textContent = "live"; };
  ws.onmessage = (ev) => {
    const f = JSON.parse(ev.data);
    if (f.type === "state") showState(f.stream);
    else if (f.type === "entries") { v.reconnects = 0; appendEntries(f.entries); }
    else if (f.type === "end") { v.ended = true; $("conn").textContent = "complete"; }
  };
  ws.onclose = (ev) => {
    if (v.ended) return;
    if (!opened && v.reconnects === 0 && v.nextIndex === 0 && !v.state) {
      // refused before the upgrade: say why
      apiFetch(`${api}/streams/${path}`).then(() => retry(), (e) => { showError(e.message); $("conn").textContent = ""; });
      return;
    }
    retry(ev.code);
  };
  v.ws = ws;
}

function retry() {
  v.reconnects++;
  const delay = Math.min(5000, 100 * 2 ** Math.min(v.reconnects, 6));
  $("conn").textContent = "reconnecting…";
  setTimeout(() => connect(`from=${v.nextIndex}`), delay);
}

// A permalink to a line before the tail: find its entry (the entry's `sequence` is the
// number of lines before it) by binary search over Get, and start a little before it.
async function entryForLine(no, nextIndex) {
  let lo = 0, hi = nextIndex - 1;
  while (lo < hi) {
    const mid = (lo + hi + 1) >> 1;
    const r = await apiFetch(`${api}/logs/${path}?index=${mid}&count=1`);
    const e = r.entries[0];
    if (e && e.sequence <= no - 1) lo = mid; else hi = mid - 1;
  }
  return lo;
}

function parseHash() {
  const h = location.hash.match(/^#L(\d+)(?:-L?(\d+))?$/);
  if (!h) return null;
  const a = Number(h[1]), b = h[2] ? Number(h[2]) : a;
  return [Math.min(a, b), Math.max(a, b)];
}

async function start() {
  if (!validPath) {
    $("title").textContent = "invalid stream path";
    document.title = "invalid stream path — logdog";
    $("status").hidden = true;
    showError(`not a stream path: ${location.pathname} (expected /logs/PROJECT/PREFIX/+/NAME)`);
    return;
  }
  $("title").textContent = `${project} / ${path}`;
  document.title = `${path} — logdog`;
  $("raw").href = `/logs/${encodeURIComponent(project)}/${path}?format=raw`;
  measure();
  const sel = parseHash();
  if (!sel) { connect(`tail=${TAIL}`); return; }
  v.selection = sel;
  v.following = false;
  try {
    const s = await apiFetch(`${api}/streams/${path}`);
    showState(s);
    const next = s.state.next_index;
    let from = 0;
    if (next > TAIL && s.descriptor.stream_type === "text") from = Math.max(0, (await entryForLine(sel[0], next)) - 50);
    connect(`from=${from}`);
    // Scroll to the line once it is loaded.
    const wait = setInterval(() => {
      const i = v.lines.findIndex((l) => l.no >= sel[0]);
      if (i >= 0) { clearInterval(wait); scrollToLine(i); }
      else if (v.ended) clearInterval(wait);
    }, 50);
  } catch (e) {
    showError(e.message);
  }
}

// A permalink typed into the address bar: go there (reloading when it is not loaded).
window.addEventListener("hashchange", () => {
  const sel = parseHash();
  if (!sel) return;
  const i = v.lines.findIndex((l) => l.no >= sel[0]);
  if (i < 0 || v.lines[i].no !== sel[0]) { location.reload(); return; }
  v.selection = sel;
  scrollToLine(i);
});

start();
