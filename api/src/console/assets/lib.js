/*
 * Silt web console: shared helpers: DOM, the API client, formatting, metrics
 * history, SVG line charts, errors and dialogs.
 * Embedded in the agent binary with include_str! and served at /ui/lib.js;
 * no build step. The console's scripts are classic scripts sharing one
 * global scope, loaded in order: lib.js, topics.js, groups.js, app.js.
 */
"use strict";

// ---------------------------------------------------------------------------
// DOM helpers
// ---------------------------------------------------------------------------

const $ = (sel, root = document) => root.querySelector(sel);
const enc = encodeURIComponent;
const ESC = { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" };

/** Escapes text for HTML element content or a quoted attribute. */
const esc = (v) => String(v ?? "").replace(/[&<>"']/g, (c) => ESC[c]);

/** Sets innerHTML only when it changed, so polling does not churn the DOM. */
function setHtml(el, html) {
  if (el._html !== html) {
    el.innerHTML = html;
    el._html = html;
  }
}

const href = {
  topic: (t) => `#/topics/${enc(t)}`,
  partition: (t, p) => `#/topics/${enc(t)}/partitions/${p}`,
  group: (g) => `#/groups/${enc(g)}`,
  share: (g) => `#/shares/${enc(g)}`,
};

const link = (url, text) => `<a href="${esc(url)}">${esc(text)}</a>`;
const td = (html, cls = "") => `<td${cls ? ` class="${cls}"` : ""}>${html}</td>`;
const tdNum = (n, testid) => `<td class="num"${testid ? ` data-testid="${testid}"` : ""}>${esc(fmtNum(n))}</td>`;

/** A definition list from [label, html, testid?] rows (html already escaped). */
const kv = (rows) =>
  `<dl class="kv">${rows.map(([k, v, id]) => `<dt>${esc(k)}</dt><dd${id ? ` data-testid="${id}"` : ""}>${v}</dd>`).join("")}</dl>`;

/** A dense table; a header "num:X" is right-aligned; rows are <tr> strings. */
function table(testid, headers, rows, empty) {
  const head = headers.map((h) => (h.startsWith("num:") ? `<th class="num">${esc(h.slice(4))}</th>` : `<th>${esc(h)}</th>`));
  const body = rows.length ? rows.join("") : `<tr class="empty"><td colspan="${headers.length}">${esc(empty)}</td></tr>`;
  return `<table class="grid" data-testid="${testid}"><thead><tr>${head.join("")}</tr></thead><tbody>${body}</tbody></table>`;
}

const parseJson = (s) => { try { return JSON.parse(s); } catch { return null; } };

// ---------------------------------------------------------------------------
// API client
// ---------------------------------------------------------------------------

class ApiError extends Error {
  constructor(code, detail, status) {
    super(`${code}: ${detail}`);
    Object.assign(this, { code, detail, status });
  }
}

/** An ApiError from an RFC 9457 problem body (or whatever came instead). */
function problemError(p, status, fallback) {
  p = p && typeof p === "object" ? p : {};
  status = status || p.status || 0;
  return new ApiError(p.code || (status ? `http_${status}` : "error"), p.detail || p.title || fallback || `HTTP ${status}`, status);
}

async function api(path, { method = "GET", body } = {}) {
  const headers = { Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let res;
  try {
    res = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  } catch (e) {
    throw new ApiError("network_error", `the agent could not be reached (${e.message})`, 0);
  }
  const text = await res.text().catch(() => "");
  const data = text ? parseJson(text) : null;
  if (!res.ok) throw problemError(data, res.status, text.slice(0, 200) || res.statusText);
  return data;
}

const partPath = (t, p) => `/v1/topics/${enc(t)}/partitions/${p}`;

const Api = {
  topics: () => api("/v1/topics?detail=true"),
  topic: (t) => api(`/v1/topics/${enc(t)}`),
  createTopic: (body) => api("/v1/topics", { method: "POST", body }),
  deleteTopic: (t) => api(`/v1/topics/${enc(t)}`, { method: "DELETE" }),
  records: (t, p, offset, max) => api(`${partPath(t, p)}/records?offset=${offset}&max_records=${max}&encoding=base64`),
  offsets: (t, p, ts) => api(`${partPath(t, p)}/offsets${ts == null ? "" : `?timestamp=${ts}`}`),
  groups: () => api("/v1/consumer-groups"),
  group: (g) => api(`/v1/consumer-groups/${enc(g)}`),
  shares: () => api("/v1/share-groups"),
  share: (g) => api(`/v1/share-groups/${enc(g)}`),
  cluster: () => api("/v1/cluster"),
  // `last`: only the latest samples (the topic list needs two, for rates).
  history: (names, last) => api(`/v1/metrics/history?names=${names.map(enc).join(",")}${last ? `&last=${last}` : ""}`),
};

/** Awaits all: the values (undefined where failed) and the first error. */
async function settle(promises) {
  const rs = await Promise.allSettled(promises);
  const failed = rs.find((r) => r.status === "rejected");
  return { values: rs.map((r) => (r.status === "fulfilled" ? r.value : undefined)), error: failed && failed.reason };
}

// ---------------------------------------------------------------------------
// Formatting
// ---------------------------------------------------------------------------

const nf = new Intl.NumberFormat();
const pad = (n, w = 2) => String(n).padStart(w, "0");
const fmtNum = (n) => (n == null || !Number.isFinite(n) ? "–" : nf.format(n));
const yesNo = (b) => (b ? "yes" : "no");
const json = (v) => `<code class="json">${esc(JSON.stringify(v ?? null))}</code>`;

function fmtBytes(b) {
  if (b == null || !Number.isFinite(b)) return "–";
  const units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
  let i = 0;
  for (; Math.abs(b) >= 1024 && i < units.length - 1; i++) b /= 1024;
  return i === 0 ? `${b} B` : `${b.toFixed(b < 10 ? 2 : b < 100 ? 1 : 0)} ${units[i]}`;
}

function fmtRate(r) {
  if (r == null || !Number.isFinite(r)) return "–";
  return r >= 100 ? nf.format(Math.round(r)) : r.toFixed(r >= 10 ? 1 : 2);
}

/** Local ISO-like date-time with milliseconds: 2025-11-26T10:06:40.123 */
function fmtTime(ms) {
  if (ms == null || !Number.isFinite(ms) || ms < 0) return "–";
  const d = new Date(ms);
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.${pad(d.getMilliseconds(), 3)}`;
}

function fmtClock(ms, seconds = true) {
  const d = new Date(ms);
  return `${pad(d.getHours())}:${pad(d.getMinutes())}${seconds ? `:${pad(d.getSeconds())}` : ""}`;
}

function fmtDuration(ms) {
  if (ms == null || !Number.isFinite(ms)) return "–";
  if (ms < 1000) return `${Math.round(ms)} ms`;
  const s = ms / 1000;
  if (s < 60) return `${s < 10 ? s.toFixed(1) : Math.floor(s)} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} m ${Math.floor(s % 60)} s`;
  const h = Math.floor(m / 60);
  return h < 24 ? `${h} h ${m % 60} m` : `${Math.floor(h / 24)} d ${h % 24} h`;
}

/** "12 s ago" / "in 3 s", relative to `now` (the agent's clock when known). */
function fmtAgo(ms, now = Date.now()) {
  if (ms == null || !Number.isFinite(ms)) return "–";
  return now >= ms ? `${fmtDuration(now - ms)} ago` : `in ${fmtDuration(ms - now)}`;
}

/** Relative time with the absolute one beside it (HTML). */
const fmtWhen = (ms, now) => (ms == null ? "–" : `${esc(fmtAgo(ms, now))} <span class="muted">${esc(fmtTime(ms))}</span>`);

/** Base64 (or null) to bytes; a string that is not base64 is kept as UTF-8. */
function b64(s) {
  if (s == null) return null;
  try {
    return Uint8Array.from(atob(s), (c) => c.charCodeAt(0));
  } catch {
    return new TextEncoder().encode(String(s));
  }
}

const utf8 = new TextDecoder("utf-8", { fatal: false });
const SHOW_BYTES = 8192;

/** Bytes as text (bad UTF-8 shows as U+FFFD) or hex, capped at SHOW_BYTES. */
function showBytes(u, format) {
  if (u == null) return null;
  const part = u.length > SHOW_BYTES ? u.subarray(0, SHOW_BYTES) : u;
  const s = format === "hex" ? Array.from(part, (b) => b.toString(16).padStart(2, "0")).join(" ") : utf8.decode(part);
  return u.length > SHOW_BYTES ? `${s}… (${nf.format(u.length)} bytes)` : s;
}

const decodeRecord = (r) => ({
  offset: r.offset,
  timestamp: r.timestamp,
  key: b64(r.key),
  value: b64(r.value),
  headers: (r.headers || []).map((h) => ({ key: h.key, value: b64(h.value) })),
});

// ---------------------------------------------------------------------------
// Metrics history: pick series by labels, counters to per-second rates
// ---------------------------------------------------------------------------

const last = (arr) => (arr && arr.length ? arr[arr.length - 1] : null);

function pick(h, name, want = {}) {
  if (!h || !Array.isArray(h.series)) return [];
  const match = (s) => Object.entries(want).every(([k, v]) => s.labels && s.labels[k] === String(v));
  return h.series.filter((s) => s.name === name && match(s));
}

/** Per-second rate of a cumulative counter; null on gaps and resets. */
function toRates(times, values) {
  return values.map((b, i) => {
    const a = values[i - 1];
    const dt = (times[i] - times[i - 1]) / 1000;
    return i === 0 || a == null || b == null || !(dt > 0) || b < a ? null : (b - a) / dt;
  });
}

/** Element-wise sum of value arrays; null where every input is null. */
function sumSeries(list, n) {
  const out = new Array(n).fill(null);
  for (const vals of list) for (let i = 0; i < n; i++) if (vals[i] != null) out[i] = (out[i] ?? 0) + vals[i];
  return out;
}

const rateOf = (h, name, want) => (h ? sumSeries(pick(h, name, want).map((s) => toRates(h.times, s.values)), h.times.length) : []);
const gaugeOf = (h, name, want) => (h ? sumSeries(pick(h, name, want).map((s) => s.values), h.times.length) : []);

// ---------------------------------------------------------------------------
// Charts: hand-written SVG line charts over the last hour
// ---------------------------------------------------------------------------

const HOUR_MS = 3600000;
const [CW, CH] = [640, 180];
const PAD = { l: 56, r: 12, t: 8, b: 22 };
const PALETTE = ["#2563eb", "#dc2626", "#16a34a", "#d97706", "#7c3aed", "#0891b2", "#db2777", "#65a30d", "#4b5563", "#ea580c"];
const LEGEND_MAX = 12;
const color = (k) => PALETTE[k % PALETTE.length];
const chartBox = (testid) => `<div class="chart" data-testid="${testid}"></div>`;
const fmtTip = (v) => (v == null ? "–" : Number.isInteger(v) ? nf.format(v) : v.toFixed(2));

function niceStep(range, ticks) {
  const raw = range / ticks;
  const p = 10 ** Math.floor(Math.log10(raw));
  const m = raw / p;
  return (m <= 1 ? 1 : m <= 2 ? 2 : m <= 5 ? 5 : 10) * p;
}

function fmtAxis(v) {
  const a = Math.abs(v);
  if (a >= 1e9) return `${+(v / 1e9).toFixed(1)}G`;
  if (a >= 1e6) return `${+(v / 1e6).toFixed(1)}M`;
  if (a >= 1e3) return `${+(v / 1e3).toFixed(1)}k`;
  return String(+v.toFixed(2));
}

/**
 * Draws a line chart into `el`. `series` is [{label, values}], values aligned
 * with `times` (ms); the x-axis ends at the last sample and spans the hour
 * before it (less while there is less history); nulls
 * break the line. Fewer than 2 points in all shows "no data yet".
 */
function lineChart(el, { title, times, series, unit = "", yMax = null }) {
  times = times || [];
  const key = [title, times.length, last(times), ...series.map((s) => `${s.label}=${last(s.values)}`)].join("|");
  if (el._chartKey === key) return; // unchanged since the last poll: keep the hover state
  el._chartKey = key;
  // The last hour, or less while the agent has run for less (at least
  // five minutes), so a fresh agent's samples are not a sliver at the edge.
  const end = times.length ? last(times) : Date.now();
  const span = Math.min(HOUR_MS, Math.max(5 * 60000, end - (times[0] ?? end)));
  const start = end - span;
  const tickMs = span > 30 * 60000 ? 600000 : span > 10 * 60000 ? 300000 : 60000;
  let first = times.findIndex((t) => t >= start);
  if (first < 0) first = times.length;
  let [n, lo, hi] = [0, 0, yMax ?? 0];
  for (const s of series) {
    for (let i = first; i < times.length; i++) {
      const v = s.values[i];
      if (v == null || !Number.isFinite(v)) continue;
      [n, lo, hi] = [n + 1, Math.min(lo, v), Math.max(hi, v)];
    }
  }
  const head = `<div class="chart-title">${esc(title)}${unit ? ` <span class="muted">${esc(unit)}</span>` : ""}</div>`;
  let svg = `<svg class="chart-svg" viewBox="0 0 ${CW} ${CH}" role="img"><title>${esc(title)}</title>`;
  if (n < 2) {
    el.innerHTML = `${head}${svg}<text class="nodata" x="${CW / 2}" y="${CH / 2}" text-anchor="middle">no data yet</text></svg>`;
    return;
  }
  if (hi === lo) hi = lo + 1;
  const step = niceStep(hi - lo, 4);
  const [y0, y1] = [Math.floor(lo / step) * step, Math.ceil(hi / step) * step];
  const [pw, ph] = [CW - PAD.l - PAD.r, CH - PAD.t - PAD.b];
  const X = (t) => PAD.l + ((t - start) / span) * pw;
  const Y = (v) => PAD.t + (1 - (v - y0) / (y1 - y0)) * ph;

  for (let k = 0; y0 + k * step <= y1 + step / 2; k++) {
    const y = Y(y0 + k * step).toFixed(1);
    svg += `<line class="gridline" x1="${PAD.l}" x2="${CW - PAD.r}" y1="${y}" y2="${y}"/>`;
    svg += `<text class="tick" x="${PAD.l - 4}" y="${y}" dy="0.32em" text-anchor="end">${esc(fmtAxis(y0 + k * step))}</text>`;
  }
  for (let t = Math.ceil(start / tickMs) * tickMs; t <= end; t += tickMs) {
    const x = X(t).toFixed(1);
    svg += `<line class="gridline" x1="${x}" x2="${x}" y1="${PAD.t}" y2="${CH - PAD.b}"/>`;
    svg += `<text class="tick" x="${x}" y="${CH - 6}" text-anchor="middle">${fmtClock(t, false)}</text>`;
  }
  series.forEach((s, k) => {
    let [d, run] = ["", 0];
    for (let i = first; i <= times.length; i++) {
      const v = s.values[i];
      if (i === times.length || v == null || !Number.isFinite(v)) {
        if (run === 1) d += "l0.01,0"; // a lone point still shows, as a dot
        run = 0;
      } else {
        d += `${run++ ? "L" : "M"}${X(times[i]).toFixed(1)},${Y(v).toFixed(1)}`;
      }
    }
    if (d) svg += `<path class="line" d="${d}" stroke="${color(k)}"/>`;
  });
  svg += `<line class="cursor" y1="${PAD.t}" y2="${CH - PAD.b}" visibility="hidden"/></svg>`;
  const keys = series.slice(0, LEGEND_MAX).map((s, k) => `<span class="key"><i style="background:${color(k)}"></i>${esc(s.label)}</span>`);
  if (series.length > LEGEND_MAX) keys.push(`<span class="muted">+${series.length - LEGEND_MAX} more</span>`);
  el.innerHTML = `${head}${svg}<div class="legend">${keys.join("")}</div><div class="tip" hidden></div>`;

  // Tooltip: the sample nearest the pointer, with every series' value.
  const [svgEl, tip, cursor] = [$("svg", el), $(".tip", el), $(".cursor", el)];
  svgEl.addEventListener("mousemove", (e) => {
    const r = svgEl.getBoundingClientRect();
    const t = start + ((((e.clientX - r.left) / r.width) * CW - PAD.l) / pw) * span;
    let best = -1;
    for (let i = first; i < times.length; i++) if (best < 0 || Math.abs(times[i] - t) < Math.abs(times[best] - t)) best = i;
    if (best < 0) return;
    const cx = X(times[best]).toFixed(1);
    cursor.setAttribute("x1", cx);
    cursor.setAttribute("x2", cx);
    cursor.setAttribute("visibility", "visible");
    const rows = series
      .slice(0, LEGEND_MAX)
      .map((s, k) => `<div><i style="background:${color(k)}"></i>${esc(s.label)}: <b>${esc(fmtTip(s.values[best]))}</b></div>`);
    tip.innerHTML = `<div class="muted">${fmtClock(times[best])}</div>${rows.join("")}`;
    tip.hidden = false;
    const er = el.getBoundingClientRect();
    tip.style.left = `${Math.max(0, Math.min(e.clientX - er.left + 12, er.width - tip.offsetWidth - 4))}px`;
    tip.style.top = `${e.clientY - er.top + 12}px`;
  });
  svgEl.addEventListener("mouseleave", () => {
    tip.hidden = true;
    cursor.setAttribute("visibility", "hidden");
  });
}

// ---------------------------------------------------------------------------
// Errors, status bar and dialogs
// ---------------------------------------------------------------------------

// A poll error clears at the next successful poll; an action error (create,
// delete, seek, follow) stays until dismissed, a later action succeeds or the
// view changes.
const errors = { poll: null, action: null };

const toApiError = (e) => (e instanceof ApiError ? e : new ApiError("console_error", (e && e.message) || String(e), 0));

function showError(e, sticky = false) {
  errors[sticky ? "action" : "poll"] = toApiError(e);
  renderError();
}

function clearError(...kinds) {
  for (const k of kinds) errors[k] = null;
  renderError();
}

function renderError() {
  const e = errors.action || errors.poll;
  $("#error-banner").hidden = !e;
  $("#error-text").textContent = e ? `${e.code}: ${e.detail}` : "";
}

const markUpdated = () => ($("#updated").textContent = `updated ${fmtClock(Date.now())}`);

function setVersion(cluster) {
  const v = cluster && cluster.agent && cluster.agent.version;
  if (v) $("#version").textContent = `Silt ${v}`;
}

/** Opens the in-page dialog with (escaped) HTML; returns the dialog element. */
function openModal(html) {
  const m = $("#modal");
  m.innerHTML = `<div class="dialog" role="dialog" aria-modal="true">${html}</div>`;
  m.hidden = false;
  const focus = $("input, button.primary, button.danger", m);
  if (focus) focus.focus();
  for (const b of m.querySelectorAll("[data-testid=cancel]")) b.onclick = closeModal;
  return m.firstElementChild;
}

function closeModal() {
  $("#modal").hidden = true;
  $("#modal").innerHTML = "";
}
