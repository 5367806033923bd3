// ANSI SGR rendering: turns text with escape sequences into styled spans. Handles the 16
// colours (and their bright forms), 256-colour (38;5;n / 48;5;n) and truecolour
// (38;2;r;g;b / 48;2;r;g;b), bold, dim, italic, underline, inverse, strike and their
// resets. Other escape sequences (cursor movement, OSC titles and links) are dropped, so
// raw escape codes never reach the screen. Text is set with textContent: never HTML.

const BASIC = [
  "#000000", "#cd3131", "#0dbc79", "#e5e510", "#2472c8", "#bc3fbc", "#11a8cd", "#e5e5e5",
  "#666666", "#f14c4c", "#23d18b", "#f5f543", "#3b8eea", "#d670d6", "#29b8db", "#ffffff",
];

export function color256(n) {
  if (n < 16) return BASIC[n];
  if (n < 232) {
    n -= 16;
    const v = [0, 95, 135, 175, 215, 255];
    const r = v[Math.floor(n / 36)], g = v[Math.floor(n / 6) % 6], b = v[n % 6];
    return `rgb(${r},${g},${b})`;
  }
  const l = 8 + (n - 232) * 10;
  return `rgb(${l},${l},${l})`;
}

export const PLAIN = Object.freeze({});

// Applies one SGR parameter list to a style; returns the new style (styles are immutable
// so lines can share them).
export function applySgr(style, params) {
  const s = { ...style };
  if (params.length === 0) params = [0];
  for (let i = 0; i < params.length; i++) {
    const p = params[i];
    if (p === 0) { for (const k of Object.keys(s)) delete s[k]; }
    else if (p === 1) s.bold = true;
    else if (p === 2) s.dim = true;
    else if (p === 3) s.italic = true;
    else if (p === 4) s.underline = true;
    else if (p === 7) s.inverse = true;
    else if (p === 9) s.strike = true;
    else if (p === 22) { delete s.bold; delete s.dim; }
    else if (p === 23) delete s.italic;
    else if (p === 24) delete s.underline;
    else if (p === 27) delete s.inverse;
    else if (p === 29) delete s.strike;
    else if (p >= 30 && p <= 37) s.fg = BASIC[p - 30];
    else if (p >= 90 && p <= 97) s.fg = BASIC[p - 90 + 8];
    else if (p >= 40 && p <= 47) s.bg = BASIC[p - 40];
    else if (p >= 100 && p <= 107) s.bg = BASIC[p - 100 + 8];
    else if (p === 39) delete s.fg;
    else if (p === 49) delete s.bg;
    else if (p === 38 || p === 48) {
      const key = p === 38 ? "fg" : "bg";
      if (params[i + 1] === 5 && params[i + 2] !== undefined) {
        s[key] = color256(params[i + 2] & 255);
        i += 2;
      } else if (params[i + 1] === 2 && params[i + 4] !== undefined) {
        const [r, g, b] = params.slice(i + 2, i + 5).map((v) => Math.max(0, Math.min(255, v)));
        s[key] = `rgb(${r},${g},${b})`;
        i += 4;
      } else {
        break;
      }
    }
  }
  return Object.keys(s).length ? Object.freeze(s) : PLAIN;
}

// Splits `text` into [{text, style}] runs starting from `style`; returns the runs and the
// style in effect at the end (it carries into the next line, as in a terminal).
export function parse(text, style = PLAIN) {
  const runs = [];
  let buf = "";
  let i = 0;
  const flush = () => { if (buf) { runs.push({ text: buf, style }); buf = ""; } };
  while (i < text.length) {
    const c = text.charCodeAt(i);
    if (c === 0x1b) {
      const next = text[i + 1];
      if (next === "[") {
        let j = i + 2;
        while (j < text.length && !(text.charCodeAt(j) >= 0x40 && text.charCodeAt(j) <= 0x7e)) j++;
        if (j < text.length && text[j] === "m") {
          flush();
          const body = text.slice(i + 2, j);
          const params = body === "" ? [] : body.split(/[;:]/).map((v) => (v === "" ? 0 : parseInt(v, 10) || 0));
          style = applySgr(style, params);
        }
        i = j + 1;
        continue;
      }
      if (next === "]") {
        // OSC: up to BEL or ESC \
        let j = i + 2;
        while (j < text.length && text.charCodeAt(j) !== 7 && !(text.charCodeAt(j) === 0x1b && text[j + 1] === "\\")) j++;
        i = j < text.length && text.charCodeAt(j) === 7 ? j + 1 : j + 2;
        continue;
      }
      i += 2; // a two-character escape
      continue;
    }
    if (c === 0x0d) { i++; continue; } // a carriage return inside a line
    if (c < 0x20 && c !== 0x09) { i++; continue; }
    buf += text[i];
    i++;
  }
  flush();
  return { runs, style };
}

// The visible text of a line (what search looks at).
export function plain(text) {
  return parse(text).runs.map((r) => r.text).join("");
}

// Appends the runs to `parent` as spans.
export function render(parent, runs) {
  for (const r of runs) {
    if (r.style === PLAIN) {
      parent.appendChild(document.createTextNode(r.text));
      continue;
    }
    const span = document.createElement("span");
    span.textContent = r.text;
    const s = r.style;
    let fg = s.fg, bg = s.bg;
    if (s.inverse) { [fg, bg] = [bg || "var(--bg)", fg || "var(--fg)"]; }
    if (fg) span.style.color = fg;
    if (bg) span.style.backgroundColor = bg;
    if (s.bold) span.style.fontWeight = "bold";
    if (s.dim) span.style.opacity = "0.7";
    if (s.italic) span.style.fontStyle = "italic";
    const deco = [s.underline && "underline", s.strike && "line-through"].filter(Boolean);
    if (deco.length) span.style.textDecoration = deco.join(" ");
    parent.appendChild(span);
  }
}
