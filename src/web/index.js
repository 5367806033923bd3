// The browser: projects, their prefixes, and streams found with Query (prefix, name glob,
// tag, status), each with its live state (the table refreshes every few seconds); and a
// search of the logs of every stream of a prefix (a build), matches grouped by stream.
import { apiFetch, token, setToken, streamLength } from "./common.js";

const $ = (id) => document.getElementById(id);
const REFRESH_MS = 2000;
let cursor = null;
let shown = 0;

function params() {
  const p = new URLSearchParams(location.search);
  return {
    project: p.get("project") || "",
    prefix: p.get("prefix") || "",
    name: p.get("name") || "",
    tag: p.get("tag") || "",
    status: p.get("status") || "",
    q: p.get("q") || "",
    case: p.get("case") === "1",
    regex: p.get("regex") === "1",
  };
}

function showError(msg) {
  $("error").textContent = msg;
  $("error").hidden = !msg;
}

function queryUrl(f, after) {
  const q = new URLSearchParams();
  if (f.prefix) q.set("prefix", f.prefix);
  if (f.name) q.set("name", f.name);
  if (f.tag) q.append("tag", f.tag);
  if (f.status) q.set("status", f.status);
  q.set("limit", String(Math.max(100, shown)));
  if (after) { q.set("cursor", after); q.set("limit", "100"); }
  return `/api/v1/projects/${encodeURIComponent(f.project)}/streams?${q}`;
}

function row(s) {
  const tr = document.createElement("tr");
  tr.dataset.path = s.path;
  const td = (text, cls) => { const c = document.createElement("td"); c.textContent = text; if (cls) c.className = cls; return c; };
  const link = document.createElement("a");
  link.href = `/logs/${encodeURIComponent(s.project)}/${s.path}`;
  link.textContent = s.path;
  const p = td("", "path"); p.appendChild(link);
  const status = td("", "status");
  const badge = document.createElement("span");
  badge.className = `badge ${s.state.status}`;
  badge.textContent = s.state.status;
  status.appendChild(badge);
  tr.append(p, status, td(streamLength(s), "length"), td(s.state.archival), td(new Date(s.state.updated).toLocaleString(), "muted"));
  return tr;
}

async function loadStreams(f, append) {
  const res = await apiFetch(queryUrl(f, append ? cursor : null));
  const body = $("streams");
  if (!append) body.replaceChildren();
  for (const s of res.streams) body.appendChild(row(s));
  cursor = res.next_cursor;
  shown = body.children.length;
  $("more").hidden = !cursor;
  $("summary").textContent = `${shown} stream${shown === 1 ? "" : "s"}${cursor ? "+" : ""}`;
}

async function loadPrefixes(f) {
  const res = await apiFetch(`/api/v1/projects/${encodeURIComponent(f.project)}/prefixes?limit=500`);
  const ul = $("prefixes");
  ul.replaceChildren();
  for (const p of res.prefixes) {
    const li = document.createElement("li");
    const a = document.createElement("a");
    a.textContent = p.prefix;
    a.href = `/?${new URLSearchParams({ project: f.project, prefix: p.prefix })}`;
    li.appendChild(a);
    ul.appendChild(li);
  }
  if (!res.prefixes.length) ul.innerHTML = '<li class="muted">none</li>';
}

// The search across the prefix's streams: a page of matches, grouped by stream, each
// line a link to it in the viewer.
const found = { matches: 0, streams: 0, searched: 0, cursor: null, last: null };
async function searchLogs(f) {
  if (!f.prefix) { showError("choose a prefix to search its logs"); return; }
  const q = new URLSearchParams({ prefix: f.prefix, q: f.q, limit: "500" });
  if (f.regex) q.set("regex", "true");
  if (!f.case) q.set("case", "false");
  if (found.cursor) q.set("cursor", found.cursor);
  $("results").hidden = false;
  $("results-summary").textContent = "searching…";
  const res = await apiFetch(`/api/v1/projects/${encodeURIComponent(f.project)}/search?${q}`);
  const list = $("results-list");
  for (const s of res.streams) {
    let group = found.last && found.last.dataset.path === s.path ? found.last : null;
    if (!group) {
      group = document.createElement("div");
      group.className = "result-stream";
      group.dataset.path = s.path;
      const h = document.createElement("a");
      h.className = "result-path";
      h.href = `/logs/${encodeURIComponent(f.project)}/${s.path}`;
      h.textContent = s.path;
      group.appendChild(h);
      list.appendChild(group);
      found.last = group;
      found.streams++;
    }
    for (const m of s.matches) {
      const row = document.createElement("div");
      row.className = "result-line";
      const a = document.createElement("a");
      a.className = "ln";
      a.href = `/logs/${encodeURIComponent(f.project)}/${s.path}#L${m.line + 1}`;
      a.textContent = m.line + 1;
      const t = document.createElement("span");
      t.className = "tx";
      t.textContent = m.text;
      row.append(a, t);
      group.appendChild(row);
      found.matches++;
    }
  }
  found.searched += res.streams_searched;
  found.cursor = res.next_cursor || null;
  $("results-more").hidden = !found.cursor;
  $("results-summary").textContent =
    `${found.matches.toLocaleString("en-US")} match${found.matches === 1 ? "" : "es"} in ${found.streams} stream${found.streams === 1 ? "" : "s"}` +
    (found.cursor ? " so far" : "") + ` (${f.prefix}: “${f.q}”)`;
  window.__searchDone = !found.cursor;
}

async function main() {
  $("token").value = token();
  $("token").addEventListener("change", (e) => { setToken(e.target.value.trim()); location.reload(); });
  const f = params();
  let projects = [];
  try {
    projects = (await apiFetch("/api/v1/projects")).projects;
  } catch (e) {
    showError(`listing projects: ${e.message}`);
  }
  const sel = $("project");
  const names = projects.map((p) => p.name);
  if (f.project && !names.includes(f.project)) names.unshift(f.project);
  if (!names.length) names.push("demo");
  for (const n of names) {
    const o = document.createElement("option");
    o.value = o.textContent = n;
    sel.appendChild(o);
  }
  f.project = f.project || names[0];
  sel.value = f.project;
  sel.addEventListener("change", () => { location.search = `?project=${encodeURIComponent(sel.value)}`; });
  $("f-prefix").value = f.prefix;
  $("f-name").value = f.name;
  $("f-tag").value = f.tag;
  $("f-status").value = f.status;
  $("f-q").value = f.q;
  $("f-case").checked = f.case;
  $("f-regex").checked = f.regex;
  $("filters").addEventListener("submit", (e) => {
    e.preventDefault();
    const q = new URLSearchParams({ project: f.project });
    for (const [k, id] of [["prefix", "f-prefix"], ["name", "f-name"], ["tag", "f-tag"], ["status", "f-status"], ["q", "f-q"]]) {
      const val = $(id).value.trim();
      if (val) q.set(k, val);
    }
    if ($("f-q").value.trim()) {
      if ($("f-case").checked) q.set("case", "1");
      if ($("f-regex").checked) q.set("regex", "1");
    }
    location.search = `?${q}`;
  });
  $("more").addEventListener("click", () => loadStreams(f, true).catch((e) => showError(e.message)));
  $("results-more").addEventListener("click", () => searchLogs(f).catch((e) => showError(e.message)));
  if (f.q) searchLogs(f).catch((e) => { $("results-summary").textContent = ""; showError(`searching: ${e.message}`); });
  try {
    await Promise.all([loadPrefixes(f), loadStreams(f, false)]);
  } catch (e) {
    showError(e.message);
  }
  // Live state: refresh what is shown.
  setInterval(() => {
    if (document.hidden) return;
    loadStreams(f, false).then(() => showError(""), (e) => showError(e.message));
  }, REFRESH_MS);
  window.__indexReady = true;
}

main();
