// Helpers the pages share: the optional token (kept in this browser's localStorage) and
// API calls that turn the API's error body into an Error with its message.
export function token() {
  return localStorage.getItem("logdog.token") || "";
}

export function setToken(t) {
  if (t) localStorage.setItem("logdog.token", t);
  else localStorage.removeItem("logdog.token");
}

export async function apiFetch(url) {
  const headers = { Accept: "application/json" };
  const t = token();
  if (t) headers.Authorization = `Bearer ${t}`;
  const res = await fetch(url, { headers });
  const body = await res.json().catch(() => null);
  if (!res.ok) {
    const err = new Error(body && body.error ? `${res.status} ${body.error.code}: ${body.error.message}` : `${res.status}`);
    err.status = res.status;
    throw err;
  }
  return body;
}

// "1 line", "3 lines".
export function plural(n, one, many) {
  return `${n.toLocaleString("en-US")} ${n === 1 ? one : many}`;
}

// How long a stream is, in its readers' unit: lines (text), bytes (binary) or datagrams;
// entries only where that is not known.
export function streamLength(s) {
  const n = s.state.next_sequence;
  if (n === null || n === undefined) return plural(s.state.next_index, "entry", "entries");
  switch (s.descriptor.stream_type) {
    case "binary": return plural(n, "byte", "bytes");
    case "datagram": return plural(n, "datagram", "datagrams");
    default: return plural(n, "line", "lines");
  }
}
