// The stream viewer. It holds a window of the log, never the whole of it: at first the
// tail and then live lines over the websocket watch; scrolling loads older (and, away from
// the end, newer) pages through Get, and the window is trimmed at MAX_LINES. Jumping to a
// line, a section or a search match far away loads the page around it. Rendering is
// virtual: the DOM holds only the rows on screen. Sections (GitLab, GitHub Actions and
// Buildkite markup) come from the server's outline: their headers fold and unfold, their
// raw markers never show. Search runs on the server over the whole log. A path that names
// a run's folder (`PREFIX/+/run`, whose streams are `run/stdout`, `run/stderr`, …) opens
// the run view: every stream of the run, interleaved by time. See docs/WEB.md.
import { parse, render, PLAIN } from "./ansi.js";
import { apiFetch, token, streamLength } from "./common.js";

const TAIL = 2000; // entries asked for when the viewer opens (watch tail=N)
const PAGE = 1000; // entries per page loaded through Get
const PAGE_BYTES = 2 << 20; // and bytes at most
const JUMP_BYTES = 512 << 10; // the first page of a jump: small, to show the line soon
const MAX_LINES = 400000; // lines held at most; the far side of the window is dropped
const OVERSCAN = 30;
const SEARCH_PAGE = 10000; // matches per search request
const SEARCH_CAP = 100000; // matches kept at most (the count then says "100000+")
const OUTLINE_EVERY = 2000; // ms between outline refreshes of a live stream

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
  lines: [], // the window: {no, text, runs, plain, t, idx, kind}
  firstIndex: null, // entry index of the first loaded entry
  nextIndex: 0, // one past the last loaded entry (the next the websocket sends)
  live: true, // the window reaches the stream's end and the websocket extends it
  streamNext: 0, // the stream's next_index as last seen
  following: true,
  wrap: false,
  ts: "off",
  descriptor: null,
  state: null,
  ended: false,
  loadingOlder: false,
  loadingNewer: false,
  gen: 0, // bumped when the window is replaced: answers for an older window are dropped
  selection: null, // [from, to] line numbers
  // rows: the lines shown (indices into `lines`): folded sections' lines and end markers
  // are left out
  rowBuf: new Int32Array(1024),
  nrows: 0,
  sections: [], // the server's outline
  outlineComplete: false,
  byFirst: new Map(), // a section's first line → its position in `sections`
  folds: new Map(), // first line → collapsed, where the user (or a jump) decided
  collapsed: [], // the collapsed sections, by first line
  search: { query: "", regex: false, case: false, matches: [], lines: new Set(), current: -1, done: true, capped: false, end: 0, gen: 0, busy: false },
  tops: null, // prefix sums of row heights when wrapping
  cols: 0,
  lineHeight: 18,
  reconnects: 0,
  drawTimes: [], // the last 1,000 redraws, in ms (for the benchmark and the curious)
  jumpTimes: [], // [{kind, ms}]: jumps to a line, a section or a match (the benchmark)
  firstPaint: null, // ms after navigation when the first lines were drawn
  run: null, // the run view: {sources: [{name, path, lines, hidden, …}], t0}
  result: null, // the run's result stream (its tags: command, start, end, exit code)
};
window.__viewer = v; // for tests and the curious

const scroller = $("scroller"), spacer = $("spacer"), rows = $("rows");

function descriptorTime() {
  return v.descriptor ? Date.parse(v.descriptor.timestamp) : 0;
}

// ---- Section markers ---------------------------------------------------------------

// GitLab's token, only with the `\r\e[0K` that makes it one (as the server requires).
const GL_TOKEN = /section_(?:start|end):\d+:[A-Za-z0-9_.-]+(?:\[[\w=, ]*\])?(?=\r\x1b\[0K)/g;
const GH_START = /^\s*(?:::group(?:\s[^:]*)?::|##\[group\])/i;
const GH_END = /^\s*(?:::endgroup::|##\[endgroup\])/i;
const BK_START = /^(?:---|\+\+\+|~~~)(?:\s|$)/;
const BK_EXPAND = /^\^\^\^ \+\+\+\s*$/;

function dropPrefix(runs, n) {
  const out = [];
  for (const r of runs) {
    if (n >= r.text.length) { n -= r.text.length; continue; }
    out.push(n ? { ...r, text: r.text.slice(n) } : r);
    n = 0;
  }
  return out;
}

// Sets the line's `plain` text and `kind` ("start", "end" or none), and takes the markup
// out of what is shown: a GitLab token, `::group::`, `--- `; a line that is only an end
// marker is not shown at all.
function classify(l) {
  l.kind = null;
  let plain = l.runs.map((r) => r.text).join("");
  const tokens = l.text.includes("section_") ? l.text.match(GL_TOKEN) : null;
  if (tokens) {
    for (const t of new Set(tokens)) {
      l.runs = l.runs.map((r) => (r.text.includes(t) ? { ...r, text: r.text.split(t).join("") } : r)).filter((r) => r.text);
    }
    plain = l.runs.map((r) => r.text).join("");
    if (tokens.some((t) => t.startsWith("section_start"))) l.kind = "start";
    else if (!plain.trim()) l.kind = "end";
  } else if (GH_END.test(plain) || BK_EXPAND.test(plain)) {
    l.kind = "end";
  } else {
    const m = plain.match(GH_START) || plain.match(BK_START);
    if (m) {
      l.kind = "start";
      l.runs = dropPrefix(l.runs, m[0].length);
      plain = plain.slice(m[0].length);
    }
  }
  l.plain = plain;
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
  for (const l of out) classify(l);
  return { lines: out, style, open };
}

let endStyle = PLAIN, endOpen = false;

// Adds entries at the end of the window (live or loaded); returns the first changed line.
function pushEntries(entries) {
  entries = entries.filter((e) => e.stream_index >= v.nextIndex);
  if (!entries.length) return -1;
  if (v.firstIndex === null) v.firstIndex = entries[0].stream_index;
  v.nextIndex = entries[entries.length - 1].stream_index + 1;
  v.streamNext = Math.max(v.streamNext, v.nextIndex);
  let from = v.lines.length;
  if (endOpen && v.lines.length && entries[0].text) {
    // the last line continues: re-parse it with its continuation
    const last = v.lines.pop();
    from--;
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
  return from;
}

// The window grew at its end from line `from` on: the rows follow (the oldest lines
// dropped past MAX_LINES, the view kept where it is).
function grew(from) {
  if (v.lines.length > MAX_LINES) trimFront();
  else relayout(from);
  layout();
}

// Live entries from the websocket.
function appendEntries(entries) {
  const from = pushEntries(entries);
  if (from < 0) return;
  grew(from);
  searchNew();
  if (v.following) scrollToBottom();
  else render_();
}

// The first line index of the entry holding line `i` or the next entry boundary after
// `at` lines: windows are cut at entry boundaries.
function entryBoundary(at) {
  let i = Math.max(1, Math.min(at, v.lines.length - 1));
  while (i < v.lines.length && v.lines[i].idx === v.lines[i - 1].idx) i++;
  return i;
}

// Drops the oldest lines beyond MAX_LINES (the view stays where it is).
function trimFront() {
  const a = anchor();
  const cut = entryBoundary(v.lines.length - MAX_LINES);
  if (cut >= v.lines.length) return;
  v.lines.splice(0, cut);
  v.firstIndex = v.lines[0].idx;
  relayout();
  layout();
  restore(a);
}

// Drops the newest lines beyond MAX_LINES: the window no longer reaches the end.
function trimBack() {
  let cut = entryBoundary(MAX_LINES);
  if (cut >= v.lines.length) return;
  detach();
  v.lines.length = cut;
  v.nextIndex = v.lines[cut - 1].idx + 1;
  endOpen = false; // the next page starts at an entry boundary
  endStyle = PLAIN;
  relayout();
}

async function loadOlder() {
  if (v.run || v.loadingOlder || v.firstIndex === null || v.firstIndex === 0) return;
  v.loadingOlder = true;
  const gen = v.gen;
  try {
    // About PAGE_BYTES before the window, judged by the size of its first entries.
    const sample = Math.min(v.lines.length, 5000);
    let bytes = 0;
    for (let i = 0; i < sample; i++) bytes += v.lines[i].text.length + 1;
    const spanned = sample ? v.lines[sample - 1].idx - v.firstIndex + 1 : 1;
    const k = Math.max(1, Math.min(PAGE, Math.floor(PAGE_BYTES / Math.max(1, bytes / spanned))));
    const end = v.firstIndex;
    const entries = [];
    for (let at = Math.max(0, end - k); at < end;) {
      const res = await apiFetch(`${api}/logs/${path}?index=${at}&count=${end - at}&bytes=${PAGE_BYTES}`);
      if (gen !== v.gen) return;
      const got = res.entries.filter((e) => e.stream_index < end);
      if (!got.length) break; // a gap: the window starts after it
      entries.push(...got);
      at = got[got.length - 1].stream_index + 1;
    }
    if (!entries.length || entries[entries.length - 1].stream_index !== end - 1) { v.firstIndex = 0; return; }
    const older = toLines(entries, PLAIN, false).lines;
    const a = anchor();
    v.lines.unshift(...older);
    v.firstIndex = entries[0].stream_index;
    if (v.lines.length > MAX_LINES) trimBack();
    relayout();
    layout();
    restore(a);
    render_();
  } catch (e) {
    showError(`loading older lines: ${e.message}`);
  } finally {
    v.loadingOlder = false;
  }
}

// Away from the end, scrolling down loads the next page; at the end the websocket takes
// over again.
async function loadNewer() {
  if (v.run || v.live || v.loadingNewer) return;
  v.loadingNewer = true;
  const gen = v.gen;
  try {
    const res = await apiFetch(`${api}/logs/${path}?index=${v.nextIndex}&count=${PAGE}&bytes=${PAGE_BYTES}`);
    if (gen !== v.gen) return;
    const from = pushEntries(res.entries);
    if (from < 0) { goLive(); return; }
    grew(from);
    render_();
    if (v.nextIndex >= v.streamNext) goLive();
  } catch (e) {
    showError(`loading newer lines: ${e.message}`);
  } finally {
    v.loadingNewer = false;
  }
}

// Replaces the window by the page starting at entry `index` (and the page before it),
// then shows line `no`. The websocket is closed until the window reaches the end again.
async function openAt(index, no, kind) {
  const t0 = performance.now();
  const gen = ++v.gen;
  detach();
  const res = await apiFetch(`${api}/logs/${path}?index=${index}&count=${PAGE}&bytes=${JUMP_BYTES}`);
  if (gen !== v.gen) return;
  v.lines = [];
  v.firstIndex = null;
  v.nextIndex = index;
  endStyle = PLAIN; endOpen = false;
  v.loadingOlder = false; v.loadingNewer = false;
  if (pushEntries(res.entries) < 0) { v.firstIndex = index; goLive(); return; }
  relayout();
  layout();
  focusLine(no);
  v.jumpTimes.push({ kind, ms: performance.now() - t0 });
  // Then the page before it (the view stays on the line).
  await loadOlder();
  if (gen !== v.gen) return;
  if (v.nextIndex >= v.streamNext && !v.ended) goLive();
}

// Shows line `no` (1-based): the sections around it opened, scrolled into view.
function focusLine(no) {
  if (openAround(no - 1)) relayout();
  const i = lineIndexOfNo(no);
  if (i < 0) return false;
  layout();
  scrollToLine(i);
  return true;
}

// Goes to line `no`, in the window or by loading the page around it (`index`: its
// entry, when known; else found by binary search).
async function jumpTo(no, index, kind = "line") {
  const t0 = performance.now();
  const i = lineIndexOfNo(no);
  if (i >= 0 && v.lines[i].no === no) {
    focusLine(no);
    v.jumpTimes.push({ kind, ms: performance.now() - t0 });
    return;
  }
  if (index === undefined) index = await entryForLine(no, v.streamNext || v.nextIndex);
  await openAt(index, no, kind);
}

// ---- Rows: what is shown --------------------------------------------------------------

// Folded: as the user left it, else as the markup says — except a section still running
// at the end of a live log, which stays open so its new lines are seen.
function isCollapsed(s) {
  const f = v.folds.get(s.first_line);
  if (f !== undefined) return f;
  return s.collapsed && !(s.last_line === null && !v.outlineComplete);
}

function rebuildCollapsed() {
  v.collapsed = v.sections.filter(isCollapsed);
}

// Opens the sections that hide line `ln` (0-based). Returns whether any was opened.
function openAround(ln) {
  let changed = false;
  for (const s of v.sections) {
    if (s.first_line >= ln) break;
    if ((s.last_line === null || ln <= s.last_line) && isCollapsed(s)) {
      v.folds.set(s.first_line, false);
      changed = true;
    }
  }
  if (changed) rebuildCollapsed();
  return changed;
}

// The rows from line index `from` on (the ones before are kept).
function relayout(from = 0) {
  const lines = v.lines, n = lines.length;
  let k = from > 0 ? lowerBound(v.rowBuf, v.nrows, from) : 0;
  if (v.rowBuf.length < n) {
    const b = new Int32Array(Math.max(n, v.rowBuf.length * 2));
    b.set(v.rowBuf.subarray(0, k));
    v.rowBuf = b;
  }
  const col = v.run ? [] : v.collapsed;
  let j = 0, until = -1;
  if (from < n) {
    const ln0 = lines[from].no - 1;
    while (j < col.length && col[j].first_line < ln0) {
      const e = col[j++].last_line;
      until = Math.max(until, e === null ? Infinity : e);
    }
  }
  for (let i = from; i < n; i++) {
    const l = lines[i], ln = l.no - 1;
    while (j < col.length && col[j].first_line < ln) {
      const e = col[j++].last_line;
      until = Math.max(until, e === null ? Infinity : e);
    }
    if (ln <= until || l.kind === "end") continue;
    v.rowBuf[k++] = i;
  }
  v.nrows = k;
  v.tops = null;
}

// The first position in buf[0..n) holding a value ≥ x.
function lowerBound(buf, n, x) {
  let lo = 0, hi = n;
  while (lo < hi) { const mid = (lo + hi) >> 1; if (buf[mid] < x) lo = mid + 1; else hi = mid; }
  return lo;
}

// The index in `lines` of line `no`, or of the first line after it; -1 when past the end.
function lineIndexOfNo(no) {
  if (v.run) return v.lines.findIndex((l) => l.no >= no);
  let lo = 0, hi = v.lines.length;
  while (lo < hi) { const mid = (lo + hi) >> 1; if (v.lines[mid].no < no) lo = mid + 1; else hi = mid; }
  return lo < v.lines.length ? lo : -1;
}

// Where the view is (the first row on screen and how far into it), to be put back after
// the rows change.
function anchor() {
  if (!v.nrows) return null;
  const k = indexAt(scroller.scrollTop);
  return { line: v.lines[v.rowBuf[k]], off: scroller.scrollTop - top(k) };
}

function restore(a) {
  if (!a) return;
  let i = v.run ? v.lines.indexOf(a.line) : lineIndexOfNo(a.line.no);
  if (i < 0) return;
  const k = Math.min(lowerBound(v.rowBuf, v.nrows, i), Math.max(0, v.nrows - 1));
  if (v.wrap && !v.tops) computeTops();
  scroller.scrollTop = top(k) + a.off;
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
  const tops = new Float64Array(v.nrows + 1);
  for (let k = 0; k < v.nrows; k++) {
    const n = Math.max(1, Math.ceil(v.lines[v.rowBuf[k]].plain.length / v.cols));
    tops[k + 1] = tops[k] + n * v.lineHeight;
  }
  v.tops = tops;
}

function top(k) { return v.wrap ? v.tops[k] : k * v.lineHeight; }
function totalHeight() { return top(v.nrows); }

// The row at height y.
function indexAt(y) {
  if (!v.wrap) return Math.max(0, Math.min(v.nrows - 1, Math.floor(y / v.lineHeight)));
  let lo = 0, hi = v.nrows;
  while (lo < hi) { const mid = (lo + hi) >> 1; if (v.tops[mid + 1] <= y) lo = mid + 1; else hi = mid; }
  return Math.min(lo, Math.max(0, v.nrows - 1));
}

function layout() {
  if (v.wrap && (!v.tops || v.tops.length !== v.nrows + 1)) computeTops();
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

// "0.4s", "12.3s", "2m 05s", "1h 02m".
function duration(ms) {
  const s = ms / 1000;
  if (s < 60) return `${s.toFixed(1)}s`;
  const p = (n) => String(Math.floor(n)).padStart(2, "0");
  if (s < 3600) return `${Math.floor(s / 60)}m ${p(s % 60)}s`;
  return `${Math.floor(s / 3600)}h ${p((s % 3600) / 60)}m`;
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
    if (v.firstPaint === null && v.nrows) v.firstPaint = t1;
  });
}

function draw() {
  if (!v.nrows) { rows.replaceChildren(); return; }
  const y0 = scroller.scrollTop, y1 = y0 + scroller.clientHeight;
  const first = Math.max(0, indexAt(y0) - OVERSCAN);
  const last = Math.min(v.nrows - 1, indexAt(y1) + OVERSCAN);
  const frag = document.createDocumentFragment();
  const s = v.search;
  const currentNo = v.run ? -1 : s.current >= 0 && s.matches[s.current] ? s.matches[s.current].line + 1 : -1;
  const currentLine = v.run && s.current >= 0 ? v.lines[s.matches[s.current]] : null;
  for (let k = first; k <= last; k++) {
    const i = v.rowBuf[k];
    const l = v.lines[i];
    const row = document.createElement("div");
    row.className = "line";
    if (l.note) row.classList.add("note");
    if (v.selection && !l.src && l.no >= v.selection[0] && l.no <= v.selection[1]) row.classList.add("selected");
    if (v.run ? s.set && s.set.has(l) : s.lines.has(l.no)) row.classList.add("match");
    if (v.run ? currentLine === l : currentNo === l.no) row.classList.add("current");
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
    const si = l.src ? undefined : v.byFirst.get(l.no - 1);
    if (si !== undefined) {
      drawHeader(row, v.sections[si], si, l);
    } else {
      const tx = document.createElement("span");
      tx.className = "tx";
      render(tx, l.runs);
      row.appendChild(tx);
    }
    frag.appendChild(row);
  }
  rows.style.top = `${top(first)}px`;
  rows.replaceChildren(frag);
}

// A section's header row: the fold toggle, the title, what is folded and the duration.
function drawHeader(row, s, si, l) {
  const collapsed = isCollapsed(s);
  row.classList.add("section", collapsed ? "collapsed" : "expanded");
  if (s.deemphasized) row.classList.add("deemphasized");
  row.dataset.section = si;
  const tx = document.createElement("span");
  tx.className = "tx";
  const fold = document.createElement("span");
  fold.className = "fold";
  fold.textContent = collapsed ? "▸" : "▾";
  tx.appendChild(fold);
  const title = document.createElement("span");
  title.className = "title";
  if (l.plain.trim()) render(title, l.runs);
  else title.textContent = s.title;
  tx.appendChild(title);
  if (collapsed && s.last_line !== null && s.last_line > s.first_line) {
    const n = document.createElement("span");
    n.className = "folded";
    n.textContent = `${(s.last_line - s.first_line).toLocaleString("en-US")} lines`;
    tx.appendChild(n);
  }
  row.appendChild(tx);
  if (!s.hide_duration) {
    const d = document.createElement("span");
    d.className = "dur";
    d.textContent = s.duration_ms !== null ? duration(s.duration_ms) : s.last_line === null ? "running" : "";
    row.appendChild(d);
  }
}

// Whether there are lines below the screen ("Jump to latest" shows only then).
function atBottom() {
  return scroller.scrollTop + scroller.clientHeight >= scroller.scrollHeight - v.lineHeight;
}

function updateJump() {
  $("jump").hidden = v.live && (v.following || atBottom());
}

scroller.addEventListener("scroll", () => {
  v.following = v.live && atBottom();
  updateJump();
  if (!v.run) {
    if (scroller.scrollTop < v.lineHeight * 20) loadOlder();
    if (!v.live && scroller.scrollTop + scroller.clientHeight > scroller.scrollHeight - v.lineHeight * 20) loadNewer();
  }
  render_();
});

// Back to the end: at once when the window reaches it, else by loading the tail again.
$("jump").addEventListener("click", () => {
  $("jump").hidden = true;
  v.following = true;
  if (v.live) { scrollToBottom(); return; }
  ++v.gen;
  v.lines = [];
  v.firstIndex = null;
  v.nextIndex = 0;
  endStyle = PLAIN; endOpen = false;
  relayout();
  layout();
  v.live = true;
  v.reconnects = 0;
  connect(`tail=${TAIL}`);
});

// Line links: click selects a line, shift-click a range; the URL keeps it (#L10-L20).
// A section's header folds and unfolds it.
rows.addEventListener("click", (ev) => {
  const ln = ev.target.closest(".ln");
  if (!ln) {
    const h = ev.target.closest(".line.section");
    if (h) toggle(Number(h.dataset.section));
    return;
  }
  if (v.run) return;
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

function toggle(si) {
  const s = v.sections[si];
  if (!s) return;
  const a = anchor();
  v.folds.set(s.first_line, !isCollapsed(s));
  rebuildCollapsed();
  relayout();
  layout();
  restore(a);
  renderOutline();
  render_();
}

function scrollToLine(i) {
  const k = Math.min(lowerBound(v.rowBuf, v.nrows, i), Math.max(0, v.nrows - 1));
  if (v.wrap && !v.tops) computeTops();
  const y = top(k) - scroller.clientHeight / 3;
  v.following = false;
  scroller.scrollTop = Math.max(0, y);
  updateJump();
  render_();
}

// ---- The outline -------------------------------------------------------------------

let outlineStarted = false;
async function loadOutline() {
  if (v.run || !v.descriptor || v.descriptor.stream_type !== "text") return;
  try {
    setOutline(await apiFetch(`${api}/sections/${path}`));
  } catch (e) {
    // the outline is an aid: the log is shown without it
  }
  if (!v.outlineComplete) setTimeout(loadOutline, OUTLINE_EVERY);
}

function setOutline(o) {
  const same = o.sections.length === v.sections.length && v.outlineComplete === o.complete &&
    JSON.stringify(o.sections) === JSON.stringify(v.sections);
  v.outlineComplete = o.complete;
  if (same) return;
  v.sections = o.sections;
  v.byFirst = new Map(o.sections.map((s, i) => [s.first_line, i]));
  // what must stay visible: the permalink's line and the current match
  if (v.selection) openAround(v.selection[0] - 1);
  const cur = v.search.matches[v.search.current];
  if (cur && !v.run) openAround(cur.line);
  rebuildCollapsed();
  const a = anchor();
  relayout();
  layout();
  if (v.following) scrollToBottom();
  else { restore(a); render_(); }
  renderOutline();
}

function renderOutline() {
  const list = $("outline-list");
  const button = $("outline-toggle");
  if (!v.sections.length) { button.hidden = true; $("outline").hidden = true; return; }
  button.hidden = false;
  button.textContent = `Sections (${v.sections.length})`;
  if (!button.dataset.touched && !v.outlineShown) { $("outline").hidden = false; v.outlineShown = true; }
  list.replaceChildren(...v.sections.map((s, si) => {
    const li = document.createElement("li");
    li.dataset.section = si;
    li.style.paddingLeft = `${4 + s.depth * 14}px`;
    if (s.deemphasized) li.classList.add("deemphasized");
    const a = document.createElement("a");
    a.href = `#L${s.first_line + 1}`;
    a.textContent = s.title || s.name;
    li.appendChild(a);
    if (!s.hide_duration && s.duration_ms !== null) {
      const d = document.createElement("span");
      d.className = "dur";
      d.textContent = duration(s.duration_ms);
      li.appendChild(d);
    }
    return li;
  }));
}

$("outline-list").addEventListener("click", (ev) => {
  const li = ev.target.closest("li");
  if (!li) return;
  ev.preventDefault();
  const s = v.sections[Number(li.dataset.section)];
  v.folds.set(s.first_line, false);
  rebuildCollapsed();
  relayout();
  renderOutline();
  jumpTo(s.first_line + 1, s.first_index, "section");
});
$("outline-toggle").addEventListener("click", (ev) => {
  ev.currentTarget.dataset.touched = "1";
  $("outline").hidden = !$("outline").hidden;
  measure(); v.tops = null; layout(); render_();
});

// ---- Search ------------------------------------------------------------------------

function searchParams(from) {
  const s = v.search;
  const q = new URLSearchParams({ q: s.query, from: String(from), limit: String(SEARCH_PAGE), max_ms: "1000" });
  if (s.regex) q.set("regex", "true");
  if (!s.case) q.set("case", "false");
  return q;
}

// The whole stream on the server, page after page; the first match is shown as soon as
// it is known.
async function runSearch() {
  const s = v.search;
  const gen = ++s.gen;
  s.matches = []; s.lines = new Set(); s.current = -1; s.done = false; s.capped = false; s.end = 0;
  $("count").title = "";
  if (v.run) { localSearch(true); render_(); return; }
  if (!s.query) { s.done = true; updateCount(); render_(); return; }
  updateCount();
  const t0 = performance.now();
  let from = 0;
  for (;;) {
    let r;
    try {
      r = await apiFetch(`${api}/search/${path}?${searchParams(from)}`);
    } catch (e) {
      if (gen === s.gen) { s.done = true; $("count").textContent = "error"; $("count").title = e.message; }
      return;
    }
    if (gen !== s.gen) return;
    for (const x of r.matches) { s.matches.push(x); s.lines.add(x.line + 1); }
    from = r.next_index;
    if (s.current < 0 && s.matches.length) { s.current = 0; gotoMatch(0); }
    if (!r.more) break;
    if (s.matches.length >= SEARCH_CAP) { s.capped = true; break; }
    updateCount();
  }
  s.end = from;
  s.done = true;
  s.ms = performance.now() - t0;
  updateCount();
  render_();
}

// A live stream: the lines that arrived since are searched too (at most once a second).
let searchTimerNew = null;
function searchNew() {
  const s = v.search;
  if (v.run || !s.query || !s.done || s.capped || searchTimerNew) return;
  searchTimerNew = setTimeout(async () => {
    searchTimerNew = null;
    if (!s.done || s.capped) return;
    const gen = s.gen;
    s.done = false;
    try {
      for (;;) {
        const r = await apiFetch(`${api}/search/${path}?${searchParams(s.end)}`);
        if (gen !== s.gen) return;
        for (const x of r.matches) { s.matches.push(x); s.lines.add(x.line + 1); }
        s.end = r.next_index;
        if (!r.more) break;
        if (s.matches.length >= SEARCH_CAP) { s.capped = true; break; }
      }
    } catch (e) {
      // tried again with the next entries
    } finally {
      if (gen === s.gen) { s.done = true; updateCount(); render_(); }
    }
  }, 1000);
}

function gotoMatch(k) {
  const x = v.search.matches[k];
  if (!x) return;
  jumpTo(x.line + 1, x.stream_index, "match");
}

// The run view searches its loaded lines.
function localSearch(jump) {
  const s = v.search;
  const q = s.query.toLowerCase();
  if (!q) { s.matches = []; s.set = null; s.current = -1; s.done = true; $("count").textContent = ""; return; }
  const matches = [];
  for (let i = 0; i < v.lines.length; i++) if (v.lines[i].plain.toLowerCase().includes(q)) matches.push(i);
  s.matches = matches;
  s.set = new Set(matches.map((i) => v.lines[i]));
  s.done = true;
  if (s.current >= matches.length) s.current = matches.length - 1;
  if (jump) {
    s.current = matches.length ? 0 : -1;
    if (matches.length) scrollToLine(matches[0]);
  }
  updateCount();
}

function updateCount() {
  const s = v.search;
  if (!s.query) { $("count").textContent = ""; return; }
  const n = s.matches.length;
  const total = `${n}${s.capped ? "+" : ""}${s.done ? "" : "…"}`;
  $("count").textContent = n ? `${s.current + 1}/${total}` : `0/${total}`;
}

function step(d) {
  const s = v.search;
  const n = s.matches.length;
  if (!n) return;
  s.current = (s.current + d + n) % n;
  if (v.run) scrollToLine(s.matches[s.current]);
  else gotoMatch(s.current);
  updateCount();
  render_();
}

function setQuery() {
  const s = v.search;
  s.query = $("search").value;
  s.case = $("case").checked;
  s.regex = $("regex").checked;
  runSearch();
  render_();
}

let searchTimer;
$("search").addEventListener("input", () => {
  clearTimeout(searchTimer);
  searchTimer = setTimeout(setQuery, 250);
});
$("search").addEventListener("keydown", (e) => {
  if (e.key === "Enter") {
    e.preventDefault();
    clearTimeout(searchTimer);
    if (v.search.query !== e.target.value) { setQuery(); return; }
    step(e.shiftKey ? -1 : 1);
  }
});
for (const id of ["case", "regex"]) $(id).addEventListener("change", () => { if (v.search.query) setQuery(); });
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
  v.streamNext = Math.max(v.streamNext, stream.state.next_index);
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
  if (!outlineStarted && !v.run) { outlineStarted = true; loadOutline(); }
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
    if (v.ws !== ws) return;
    const f = JSON.parse(ev.data);
    if (f.type === "state") showState(f.stream);
    else if (f.type === "entries") { v.reconnects = 0; appendEntries(f.entries); }
    else if (f.type === "end") { v.ended = true; $("conn").textContent = "complete"; }
  };
  ws.onclose = (ev) => {
    if (v.ws !== ws || v.ended) return;
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
  const ws = v.ws;
  setTimeout(() => { if (v.ws === ws && v.live) connect(`from=${v.nextIndex}`); }, delay);
}

// The window stops following the end: the websocket is closed.
function detach() {
  v.live = false;
  v.following = false;
  if (v.ws) {
    const ws = v.ws;
    v.ws = null;
    ws.close();
  }
  $("conn").textContent = v.ended ? "complete" : "paused";
  updateJump();
}

// The window reaches the stream's end: the websocket extends it from there.
function goLive() {
  if (v.live || v.run) return;
  v.live = true;
  v.reconnects = 0;
  connect(`from=${v.nextIndex}`);
  updateJump();
}

// A line far from the window: find its entry (an entry's `sequence` is the number of
// lines before it) over Get, guessing by interpolation (lines are spread about evenly in
// most logs: two or three requests) every other step and halving the range in between
// (at most twice the requests of a binary search when they are not).
async function entryForLine(no, nextIndex) {
  const target = no - 1;
  let lo = 0, loSeq = 0, hi = Math.max(0, nextIndex - 1);
  // an entry past the answer and its sequence (the stream's end at first)
  let past = nextIndex, pastSeq = v.state && v.state.next_sequence !== undefined ? v.state.next_sequence : null;
  for (let step = 0; lo < hi; step++) {
    let mid = (lo + hi + 1) >> 1;
    if (step % 2 === 0 && pastSeq !== null && pastSeq > loSeq) {
      mid = lo + Math.floor(((target - loSeq) / (pastSeq - loSeq)) * (past - lo));
      mid = Math.max(lo + 1, Math.min(hi, mid));
    }
    const r = await apiFetch(`${api}/logs/${path}?index=${mid}&count=1`);
    const e = r.entries[0];
    if (e && e.sequence <= target) { lo = mid; loSeq = e.sequence; } else { hi = mid - 1; past = mid; pastSeq = e ? e.sequence : pastSeq; }
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
  relayout();
  localSearch(false);
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
    if (next > TAIL && s.descriptor.stream_type === "text") {
      // a long log: only the pages around the line
      await openAt(await entryForLine(sel[0], next), sel[0], "line");
      return;
    }
    v.live = true;
    connect("from=0");
    // Show the line once it is loaded.
    const wait = setInterval(() => {
      if (focusLine(sel[0])) clearInterval(wait);
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

// A permalink typed into the address bar (or an outline link): go there.
window.addEventListener("hashchange", () => {
  if (v.run) return;
  const sel = parseHash();
  if (!sel) return;
  v.selection = sel;
  jumpTo(sel[0]);
});

start();
