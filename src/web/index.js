// The browser: projects, their prefixes, and streams found with Query (prefix, name glob,
// tag, status), each with its live state (the table refreshes every few seconds).
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
  $("filters").addEventListener("submit", (e) => {
    e.preventDefault();
    const q = new URLSearchParams({ project: f.project });
    for (const [k, id] of [["prefix", "f-prefix"], ["name", "f-name"], ["tag", "f-tag"], ["status", "f-status"]]) {
      const val = $(id).value.trim();
      if (val) q.set(k, val);
    }
    location.search = `?${q}`;
  });
  $("more").addEventListener("click", () => loadStreams(f, true).catch((e) => showError(e.message)));
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
