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
