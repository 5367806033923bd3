// The API explorer: reads /api/v1/openapi.json, lists every call by tag, and sends a call
// with the parameters and body filled in here (the watch route opens a websocket and shows
// its frames).
import { token, setToken } from "./common.js";

const $ = (id) => document.getElementById(id);
let spec;

function resolve(schema) {
  let s = schema;
  for (let i = 0; s && s.$ref && i < 10; i++) s = spec.components.schemas[s.$ref.split("/").pop()];
  return s || {};
}

// An example value for a schema: enough to edit, not a full generator.
function example(schema, depth = 0) {
  const s = resolve(schema);
  if (depth > 4) return null;
  if (s.oneOf || s.anyOf) {
    const alt = (s.oneOf || s.anyOf).find((x) => x.type !== "null") || {};
    return example(alt, depth + 1);
  }
  const type = Array.isArray(s.type) ? s.type.find((t) => t !== "null") : s.type;
  if (s.enum) return s.enum[0];
  switch (type) {
    case "object": {
      const out = {};
      const required = new Set(s.required || []);
      for (const [k, v] of Object.entries(s.properties || {})) {
        if (required.has(k) || (depth === 0 && !required.size)) out[k] = example(v, depth + 1);
      }
      return out;
    }
    case "array": return [example(s.items || {}, depth + 1)];
    case "integer": return 0;
    case "number": return 0;
    case "boolean": return false;
    case "string": return s.format === "date-time" ? new Date().toISOString() : "";
    default: return null;
  }
}

function el(tag, attrs = {}, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") e.className = v; else if (k === "text") e.textContent = v; else e.setAttribute(k, v);
  }
  e.append(...kids);
  return e;
}

// A description's light markdown, as DOM (never as HTML): paragraphs split by blank
// lines, `code`, **bold** and *emphasis*.
function prose(text, cls) {
  const frag = document.createDocumentFragment();
  for (const para of text.split(/\n\s*\n/)) {
    const p = el("p", cls ? { class: cls } : {});
    const re = /`([^`]+)`|\*\*([^*]+)\*\*|\*([^*\s][^*]*)\*/g;
    let at = 0, m;
    const plain = para.replace(/\s*\n\s*/g, " ");
    while ((m = re.exec(plain))) {
      if (m.index > at) p.append(plain.slice(at, m.index));
      if (m[1] !== undefined) p.append(el("code", { text: m[1] }));
      else if (m[2] !== undefined) p.append(el("strong", { text: m[2] }));
      else p.append(el("em", { text: m[3] }));
      at = re.lastIndex;
    }
    if (at < plain.length) p.append(plain.slice(at));
    frag.append(p);
  }
  return frag;
}

// "GET" and the path side by side: a long path wraps within its own column.
function opLabel(method, path) {
  return [el("span", { class: "method", text: method.toUpperCase() }), el("span", { class: "op-path", text: path })];
}

function show(method, path, op) {
  const box = $("op");
  box.replaceChildren();
  box.append(el("h2", { class: "path" }, ...opLabel(method, path)));
  if (op.summary) box.append(prose(op.summary));
  if (op.description) box.append(prose(op.description, "muted"));
  const form = el("form", { id: "call" });
  const inputs = [];
  for (const p of op.parameters || []) {
    const input = el("input", { name: p.name, "data-in": p.in, size: "40", placeholder: p.description || "" });
    inputs.push(input);
    form.append(el("label", { class: "param" }, `${p.name} (${p.in}${p.required ? ", required" : ""}) `, input));
  }
  let body = null;
  const content = op.requestBody && op.requestBody.content;
  if (content) {
    const type = Object.keys(content)[0];
    body = el("textarea", { id: "body", rows: "10", cols: "80", "data-type": type });
    body.value = type === "application/json" ? JSON.stringify(example(content[type].schema), null, 2) : "";
    form.append(el("label", { class: "param" }, `body (${type})`), body);
  }
  const send = el("button", { type: "submit", id: "send", text: "Send" });
  form.append(send);
  const out = el("pre", { id: "response", class: "response" });
  box.append(form, out);
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    let url = path;
    const query = new URLSearchParams();
    const headers = {};
    for (const i of inputs) {
      const v = i.value.trim();
      if (!v) continue;
      if (i.dataset.in === "path") url = url.replace(`{${i.name}}`, v);
      else if (i.dataset.in === "query") query.append(i.name, v);
      else if (i.dataset.in === "header") headers[i.name] = v;
    }
    if ([...query].length) url += `?${query}`;
    if (token()) headers.Authorization = `Bearer ${token()}`;
    if (path.includes("/watch/")) return watch(url, out);
    const init = { method: method.toUpperCase(), headers };
    if (body) { init.body = body.value; headers["Content-Type"] = body.dataset.type; }
    out.textContent = "…";
    try {
      const res = await fetch(url, init);
      const text = await res.text();
      let shown = text;
      try { shown = JSON.stringify(JSON.parse(text), null, 2); } catch (_) { /* not JSON */ }
      out.textContent = `${res.status} ${res.statusText}\n${res.headers.get("content-type") || ""}\n\n${shown}`;
      out.dataset.status = res.status;
    } catch (err) {
      out.textContent = `request failed: ${err.message}`;
    }
  });
}

function watch(url, out) {
  const proto = location.protocol === "https:" ? "wss" : "ws";
  const sep = url.includes("?") ? "&" : "?";
  const ws = new WebSocket(`${proto}://${location.host}${url}${token() ? `${sep}access_token=${encodeURIComponent(token())}` : ""}`);
  out.textContent = "";
  ws.onmessage = (ev) => { out.textContent += `${ev.data}\n`; };
  ws.onclose = (ev) => { out.textContent += `closed: ${ev.code} ${ev.reason}\n`; out.dataset.status = ev.code; };
}

async function main() {
  $("token").value = token();
  $("token").addEventListener("change", (e) => setToken(e.target.value.trim()));
  spec = await (await fetch("/api/v1/openapi.json")).json();
  const byTag = new Map();
  for (const [path, item] of Object.entries(spec.paths)) {
    for (const [method, op] of Object.entries(item)) {
      const tag = (op.tags && op.tags[0]) || "Other";
      if (!byTag.has(tag)) byTag.set(tag, []);
      byTag.get(tag).push([method, path, op]);
    }
  }
  const nav = $("ops");
  for (const [tag, ops] of byTag) {
    nav.append(el("h3", { text: tag }));
    const ul = el("ul", { class: "prefixes" });
    for (const [method, path, op] of ops) {
      const a = el("a", { href: `#${method}:${path}`, "data-op": `${method} ${path}`, class: "op-link" }, ...opLabel(method, path));
      a.addEventListener("click", () => show(method, path, op));
      ul.append(el("li", {}, a));
    }
    nav.append(ul);
  }
  const [m, ...p] = decodeURIComponent(location.hash.slice(1)).split(":");
  const path = p.join(":");
  if (spec.paths[path] && spec.paths[path][m]) show(m, path, spec.paths[path][m]);
  window.__explorerReady = true;
}

main().catch((e) => { $("error").textContent = e.message; $("error").hidden = false; });
