// The stream viewer: the backlog and then live lines over the websocket watch, rendered
// virtually (the DOM holds only the rows on screen), older ranges loaded through Get as the
// user scrolls up. A path that names a run's folder (`PREFIX/+/run`, whose streams are
// `run/stdout`, `run/stderr`, …) opens the run view: every stream of the run, interleaved
// by time, each line marked by its stream. See docs/WEB.md.
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
  run: null, // the run view: {sources: [{name, path, lines, hidden, …}], t0}
  result: null, // the run's result stream (its tags: command, start, end, exit code)
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
  const gutter = charWidth * 9 + (v.ts === "off" ? 0 : charWidth * 14) + (v.run ? charWidth * 8 + 7 : 0) + 4;
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

// Fixed width (the gutter does not move as times grow): 12 characters.
function timeText(l) {
  if (v.ts === "rel") {
    const t = l.at !== undefined ? (l.at - v.run.t0) / 1000 : l.t;
    return `+${t.toFixed(3)}s`.padStart(12);
  }
  const d = new Date(l.at !== undefined ? l.at : descriptorTime() + l.t * 1000);
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
    // In the run view a line number opens that line in its own stream.
    ln.href = l.src ? `/logs/${encodeURIComponent(project)}/${l.src.path}#L${l.no}` : `#L${l.no}`;
    ln.textContent = l.no;
    row.appendChild(ln);
    if (l.src) {
      row.dataset.src = l.src.name;
      const src = document.createElement("span");
      src.className = `src src-${l.src.slot}`;
      src.textContent = l.src.name;
      row.appendChild(src);
    }
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

// Whether there are lines below the screen ("Jump to latest" shows only then).
function atBottom() {
  return scroller.scrollTop + scroller.clientHeight >= scroller.scrollHeight - v.lineHeight;
}

function updateJump() {
  $("jump").hidden = v.following || atBottom();
}

scroller.addEventListener("scroll", () => {
  v.following = atBottom();
  updateJump();
  if (!v.run && scroller.scrollTop < v.lineHeight * 20) loadOlder();
  render_();
});

$("jump").addEventListener("click", () => { v.following = true; $("jump").hidden = true; scrollToBottom(); });

// Line links: click selects a line, shift-click a range; the URL keeps it (#L10-L20).
rows.addEventListener("click", (ev) => {
  const ln = ev.target.closest(".ln");
  if (!ln || v.run) return;
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
  scroller.scrollTop = Math.max(0, y);
  updateJump();
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
  if (!v.run && stream.descriptor.tags && stream.descriptor.tags["run.command"]) showRunOf(stream);
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
      apiFetch(`${api}/streams/${path}`).then(() => retry(), (e) => notAStream(e));
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

// The breadcrumb: project, the prefix's parts, the run's folder; each a link.
function crumbs() {
  const at = path.indexOf("/+/");
  const prefix = path.slice(0, at), name = path.slice(at + 3);
  const t = $("title");
  t.replaceChildren();
  const link = (text, href, cls) => {
    const a = document.createElement("a");
    a.textContent = text; a.href = href;
    if (cls) a.className = cls;
    return a;
  };
  const P = encodeURIComponent(project);
  t.append(link(project, `/?project=${P}`, "crumb-project"), " / ");
  const parts = prefix.split("/");
  parts.forEach((part, i) => {
    const upTo = parts.slice(0, i + 1).join("/");
    t.append(link(part, `/?${new URLSearchParams({ project, prefix: upTo })}`, "crumb-prefix"));
    if (i < parts.length - 1) t.append("/");
  });
  t.append(" /+/ ");
  const segs = name.split("/");
  segs.forEach((seg, i) => {
    if (i < segs.length - 1) {
      const folder = segs.slice(0, i + 1).join("/");
      t.append(link(seg, `/logs/${P}/${prefix}/+/${folder}`, "crumb-run"), "/");
    } else {
      const last = document.createElement("span");
      last.textContent = seg;
      t.append(last);
    }
  });
}

// The run header: the command, when it started and ended, how long it took, its exit
// code (from the run's `result` stream), and a link to the whole run.
function showRun(tags, runPath, result) {
  const box = $("run");
  box.replaceChildren();
  const item = (cls, text) => { const e = document.createElement("span"); e.className = cls; e.textContent = text; box.append(e); return e; };
  const when = (iso) => new Date(iso).toLocaleString();
  if (tags["run.command"]) item("run-command", `$ ${tags["run.command"]}`);
  if (tags["run.started"]) item("run-started", `started ${when(tags["run.started"])}`);
  const rt = result ? result.descriptor.tags || {} : {};
  if (rt["run.exit_code"] !== undefined) {
    item("run-ended", `ended ${when(rt["run.ended"])}`);
    item("run-duration", `${Number(rt["run.duration"]).toFixed(1)} s`);
    const code = item(`run-exit ${rt["run.exit_code"] === "0" ? "ok" : "failed"}`, `exit code ${rt["run.exit_code"]}`);
    code.dataset.code = rt["run.exit_code"];
  } else {
    item("run-exit running", "running (no result yet)");
  }
  if (runPath !== path) {
    const a = document.createElement("a");
    a.className = "run-link";
    a.href = `/logs/${encodeURIComponent(project)}/${runPath}`;
    a.textContent = "whole run";
    box.append(a);
  }
  box.hidden = false;
}

// The stream viewer of one of a run's streams: its run's header.
let runShown = false;
async function showRunOf(stream) {
  if (runShown) return;
  runShown = true;
  const folder = stream.name.includes("/") ? stream.name.slice(0, stream.name.lastIndexOf("/")) : null;
  if (!folder) return;
  const runPath = `${stream.prefix}/+/${folder}`;
  const result = await apiFetch(`${api}/streams/${runPath}/result`).catch(() => null);
  showRun(stream.descriptor.tags, runPath, result);
  const poll = setInterval(async () => {
    if (v.ended || document.hidden) { if (v.ended) clearInterval(poll); return; }
    const r = await apiFetch(`${api}/streams/${runPath}/result`).catch(() => null);
    if (r) { clearInterval(poll); showRun(stream.descriptor.tags, runPath, r); }
  }, 3000);
}

// ---- The run view -----------------------------------------------------------------

// `path` names no stream (a 404): if it is a folder of streams, show the run. Returns
// whether it did.
async function openRun() {
  const at = path.indexOf("/+/");
  const prefix = path.slice(0, at), name = path.slice(at + 3);
  let streams;
  try {
    const q = new URLSearchParams({ prefix, name: `${name}/*`, limit: "50" });
    streams = (await apiFetch(`${api}/streams?${q}`)).streams;
  } catch (e) {
    return false;
  }
  const result = streams.find((s) => s.name === `${name}/result`) || null;
  // stdout first, stderr next, any other stream after them; the result goes in the header.
  const rank = (s) => ({ stdout: 0, stderr: 1 })[s.name.slice(name.length + 1)] ?? 2;
  const shown = streams.filter((s) => s !== result && s.descriptor.stream_type === "text")
    .sort((a, b) => rank(a) - rank(b) || (a.name < b.name ? -1 : 1));
  if (!shown.length) return false;
  v.run = {
    t0: Math.min(...shown.map((s) => Date.parse(s.descriptor.timestamp))),
    sources: shown.map((s, slot) => ({
      name: s.name.slice(name.length + 1), path: s.path, slot, lines: [], hidden: false,
      nextIndex: 0, endStyle: PLAIN, endOpen: false, ended: false, reconnects: 0,
      t0: Date.parse(s.descriptor.timestamp), stream: s,
    })),
  };
  document.body.classList.add("run-view");
  measure();
  $("status").textContent = "run";
  $("status").className = "badge run";
  $("raw").hidden = true;
  const tags = (result || shown[0]).descriptor.tags || {};
  showRun(tags, path, result);
  const toggles = $("sources");
  for (const src of v.run.sources) {
    const label = document.createElement("label");
    label.className = `src-toggle src-${src.slot}`;
    const box = document.createElement("input");
    box.type = "checkbox"; box.checked = true; box.dataset.src = src.name;
    box.addEventListener("change", () => { src.hidden = !box.checked; merge(); });
    label.append(box, ` ${src.name}`);
    toggles.append(label);
  }
  toggles.hidden = false;
  for (const src of v.run.sources) connectSource(src, "from=0");
  watchResult(prefix, name, tags, result);
  return true;
}

// Until the run has a result, look for it now and then.
function watchResult(prefix, name, tags, result) {
  if (result) { v.result = result; return; }
  const poll = setInterval(async () => {
    if (document.hidden) return;
    const r = await apiFetch(`${api}/streams/${prefix}/+/${name}/result`).catch(() => null);
    if (r) { clearInterval(poll); v.result = r; showRun(tags, path, r); }
    else if (v.run.sources.every((s) => s.ended)) clearInterval(poll);
  }, 2000);
}

function connectSource(src, query) {
  const proto = location.protocol === "https:" ? "wss" : "ws";
  let url = `${proto}://${location.host}${api}/watch/${src.path}?${query}`;
  const t = token();
  if (t) url += `&access_token=${encodeURIComponent(t)}`;
  const ws = new WebSocket(url);
  ws.onopen = () => { $("conn").textContent = "live"; };
  ws.onmessage = (ev) => {
    const f = JSON.parse(ev.data);
    if (f.type === "state") src.t0 = Date.parse(f.stream.descriptor.timestamp);
    else if (f.type === "entries") { src.reconnects = 0; appendSource(src, f.entries); }
    else if (f.type === "end") {
      src.ended = true;
      if (v.run.sources.every((s) => s.ended)) { v.ended = true; $("conn").textContent = "complete"; }
    }
  };
  ws.onclose = () => {
    if (src.ended) return;
    src.reconnects++;
    $("conn").textContent = "reconnecting…";
    const delay = Math.min(5000, 100 * 2 ** Math.min(src.reconnects, 6));
    setTimeout(() => connectSource(src, `from=${src.nextIndex}`), delay);
  };
}

function appendSource(src, entries) {
  entries = entries.filter((e) => e.stream_index >= src.nextIndex);
  if (!entries.length) return;
  src.nextIndex = entries[entries.length - 1].stream_index + 1;
  let res;
  if (src.endOpen && src.lines.length) {
    const last = src.lines.pop();
    const first = entries[0];
    res = toLines([{ ...first, text: { lines: [{ value: last.text, delimiter: "" }, ...first.text.lines] }, sequence: last.no - 1 }, ...entries.slice(1)], last.style0, false);
    res.lines[0].t = last.t;
  } else {
    res = toLines(entries, src.endStyle, false);
  }
  for (const l of res.lines) { l.src = src; l.at = src.t0 + l.t * 1000; }
  src.lines.push(...res.lines);
  src.endStyle = res.style; src.endOpen = res.open;
  scheduleMerge();
}

let mergeScheduled = false;
function scheduleMerge() {
  if (mergeScheduled) return;
  mergeScheduled = true;
  requestAnimationFrame(() => { mergeScheduled = false; merge(); });
}

// The shown lines: the visible streams' lines merged by time (ties: stdout before stderr,
// then by line number), each stream's own order kept.
function merge() {
  const srcs = v.run.sources.filter((s) => !s.hidden);
  const pos = srcs.map(() => 0);
  const out = [];
  for (;;) {
    let best = -1;
    for (let k = 0; k < srcs.length; k++) {
      const l = srcs[k].lines[pos[k]];
      if (!l) continue;
      if (best < 0) { best = k; continue; }
      const b = srcs[best].lines[pos[best]];
      if (l.at < b.at || (l.at === b.at && srcs[k].slot < srcs[best].slot)) best = k;
    }
    if (best < 0) break;
    out.push(srcs[best].lines[pos[best]++]);
  }
  v.lines = out;
  v.tops = null;
  refreshSearch(false);
  layout();
  if (v.following) scrollToBottom();
  else { updateJump(); render_(); }
}

async function start() {
  if (!validPath) {
    $("title").textContent = "invalid stream path";
    document.title = "invalid stream path — logdog";
    $("status").hidden = true;
    showError(`not a stream path: ${location.pathname} (expected /logs/PROJECT/PREFIX/+/NAME)`);
    return;
  }
  crumbs();
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
    notAStream(e);
  }
}

// The path names no stream: a run's folder opens the run view, anything else says why.
async function notAStream(e) {
  if (e.status === 404 && (await openRun())) return;
  showError(e.message);
  $("conn").textContent = "";
  $("status").hidden = true;
}

// A permalink typed into the address bar: go there (reloading when it is not loaded).
window.addEventListener("hashchange", () => {
  if (v.run) return;
  const sel = parseHash();
  if (!sel) return;
  const i = v.lines.findIndex((l) => l.no >= sel[0]);
  if (i < 0 || v.lines[i].no !== sel[0]) { location.reload(); return; }
  v.selection = sel;
  scrollToLine(i);
});

start();
