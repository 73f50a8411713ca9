/*
 * Silt web console: the topic views: the topic list, one topic and its
 * partitions, and the record browser.
 * Embedded in the agent binary with include_str! and served at /ui/topics.js;
 * no build step. The console's scripts are classic scripts sharing one
 * global scope, loaded in order: lib.js, topics.js, groups.js, app.js.
 */
"use strict";

// ---------------------------------------------------------------------------
// View: topics
// ---------------------------------------------------------------------------

function partitionTotals(states) {
  const t = { records: 0, hw: 0, lso: 0, bytes: 0 };
  for (const s of states || []) {
    t.records += s.high_watermark - s.log_start_offset;
    t.hw += s.high_watermark;
    t.lso += s.log_start_offset;
    t.bytes += s.retained_bytes || 0;
  }
  return t;
}

function viewTopics(root, _params, ctx) {
  root.innerHTML = `
    <div class="view-head"><h1>Topics</h1>
      <button type="button" class="primary" data-testid="create-topic">Create topic</button></div>
    <div id="topics-body"><p class="muted">Loading…</p></div>`;
  $("[data-testid=create-topic]", root).onclick = () => openCreateTopic(ctx);
  const body = $("#topics-body", root);
  const headers = ["Name", "num:Partitions", "num:Records", "num:High watermarks (Σ)", "num:Log starts (Σ)", "num:Bytes", "num:Produce/s", "num:Fetch/s"];

  return async () => {
    const { values: [tr, h], error } = await settle([Api.topics(), Api.history(["silt_topic_records_total"], 2)]);
    if (!ctx.alive()) return;
    if (tr) {
      const topics = [...tr.topics].sort((a, b) => a.name.localeCompare(b.name));
      const rows = topics.map((t) => {
        const s = partitionTotals(t.partition_states);
        const rate = (op) => esc(fmtRate(last(rateOf(h, "silt_topic_records_total", { topic: t.name, op }))));
        return `<tr data-testid="topic-row" data-topic="${esc(t.name)}">${td(link(href.topic(t.name), t.name))}${tdNum(t.partitions)}${tdNum(s.records)}${tdNum(s.hw)}${tdNum(s.lso)}${td(esc(fmtBytes(s.bytes)), "num")}<td class="num" data-testid="produce-rate">${rate("produce")}</td><td class="num" data-testid="fetch-rate">${rate("fetch")}</td></tr>`;
      });
      const more = tr.truncated ? `<p class="muted">Only the first ${fmtNum(topics.length)} topics are shown.</p>` : "";
      setHtml(body, table("topics-table", headers, rows, "No topics yet") + more);
    }
    if (error) throw error;
  };
}

function openCreateTopic(ctx) {
  const dlg = openModal(`
    <h2>Create topic</h2>
    <form novalidate>
      <label>Name <input data-testid="topic-name" maxlength="249" autocomplete="off" spellcheck="false"></label>
      <p class="hint">1–249 characters of A–Z a–z 0–9 . _ -</p>
      <label>Partitions <input data-testid="topic-partitions" type="number" min="1" value="1"></label>
      <label>Retention (ms, empty = forever) <input data-testid="topic-retention" type="number" min="1"></label>
      <div class="actions">
        <button type="button" data-testid="cancel">Cancel</button>
        <button type="submit" class="primary" data-testid="create-submit">Create…</button>
      </div>
    </form>`);
  $("form", dlg).onsubmit = (e) => {
    e.preventDefault();
    const val = (id) => $(`[data-testid=${id}]`, dlg).value.trim();
    const body = { name: val("topic-name"), partitions: val("topic-partitions") === "" ? 1 : Number(val("topic-partitions")) };
    if (val("topic-retention") !== "") body.config = { retention_ms: Number(val("topic-retention")) };
    confirmCreateTopic(ctx, body);
  };
}

function confirmCreateTopic(ctx, body) {
  const ret = body.config ? `${fmtNum(body.config.retention_ms)} ms (${fmtDuration(body.config.retention_ms)})` : "forever";
  const dlg = openModal(`
    <h2>Create this topic?</h2>
    ${kv([["Name", `<code>${esc(body.name)}</code>`], ["Partitions", esc(fmtNum(body.partitions))], ["Retention", esc(ret)]])}
    <div class="actions">
      <button type="button" data-testid="cancel">Cancel</button>
      <button type="button" class="primary" data-testid="confirm">Create topic</button>
    </div>`);
  const ok = $("[data-testid=confirm]", dlg);
  ok.onclick = action(ctx, async () => {
    ok.disabled = true;
    try {
      await Api.createTopic(body);
    } finally {
      closeModal();
    }
    clearError("action");
    ctx.kick();
  });
}

// ---------------------------------------------------------------------------
// View: topic detail
// ---------------------------------------------------------------------------

function viewTopic(root, [name], ctx) {
  root.innerHTML = `
    <div class="crumbs">${link("#/topics", "Topics")} / ${esc(name)}</div>
    <div class="view-head"><h1>${esc(name)}</h1>
      <button type="button" class="danger" data-testid="delete-topic">Delete topic</button></div>
    <div id="topic-meta"></div>
    <h2>Partitions</h2><div id="topic-parts"></div>
    <div class="charts">${chartBox("chart-produce")}${chartBox("chart-fetch")}</div>`;
  $("[data-testid=delete-topic]", root).onclick = () => openDeleteTopic(ctx, name);
  const [meta, parts] = [$("#topic-meta", root), $("#topic-parts", root)];
  const headers = ["Partition", "num:Log start", "num:High watermark", "num:Records", "num:Bytes"];

  return async () => {
    const { values: [t, h], error } = await settle([Api.topic(name), Api.history(["silt_topic_records_total"])]);
    if (!ctx.alive()) return;
    if (t) {
      const s = partitionTotals(t.partition_states);
      setHtml(meta, kv([
        ["Partitions", esc(fmtNum(t.partitions))],
        ["Records", esc(fmtNum(s.records))],
        ["Bytes", esc(fmtBytes(s.bytes))],
        ["Created", fmtWhen(t.created_ms)],
        ["Config", json(t.config), "topic-config"],
      ]));
      const rows = [...(t.partition_states || [])]
        .sort((a, b) => a.partition - b.partition)
        .map((p) => `<tr data-testid="partition-row" data-partition="${p.partition}">${td(link(href.partition(name, p.partition), p.partition))}${tdNum(p.log_start_offset)}${tdNum(p.high_watermark)}${tdNum(p.high_watermark - p.log_start_offset)}${td(esc(fmtBytes(p.retained_bytes)), "num")}</tr>`);
      setHtml(parts, table("partitions-table", headers, rows, "No partitions"));
    }
    for (const op of ["produce", "fetch"]) {
      lineChart($(`[data-testid=chart-${op}]`, root), {
        title: op === "produce" ? "Produce" : "Fetch", unit: "records/s", times: h ? h.times : [],
        series: [{ label: op, values: rateOf(h, "silt_topic_records_total", { topic: name, op }) }],
      });
    }
    if (error) throw error;
  };
}

function openDeleteTopic(ctx, name) {
  const dlg = openModal(`
    <h2>Delete topic</h2>
    <p>This deletes <code>${esc(name)}</code> and all its records. It cannot be undone.</p>
    <label>Type the topic name to confirm
      <input data-testid="confirm-name" autocomplete="off" spellcheck="false"></label>
    <div class="actions">
      <button type="button" data-testid="cancel">Cancel</button>
      <button type="button" class="danger" data-testid="confirm" disabled>Delete topic</button>
    </div>`);
  const [input, ok] = [$("[data-testid=confirm-name]", dlg), $("[data-testid=confirm]", dlg)];
  input.oninput = () => (ok.disabled = input.value !== name);
  ok.onclick = action(ctx, async () => {
    if (input.value !== name) return;
    ok.disabled = true;
    try {
      await Api.deleteTopic(name);
    } finally {
      closeModal();
    }
    location.hash = "#/topics";
  });
}

// ---------------------------------------------------------------------------
// View: record browser (one partition)
// ---------------------------------------------------------------------------

const PAGE = 50;
const MAX_ROWS = 500;

function recordCell(text, cls) {
  if (text == null) return `<td class="${cls} null" data-testid="record-${cls}">null</td>`;
  return `<td class="${cls} trunc" data-testid="record-${cls}" title="${esc(text)}">${esc(text)}</td>`;
}

function recordRow(r, format) {
  const headers = r.headers.map((h) => `${h.key}=${showBytes(h.value, format) ?? "null"}`).join(", ");
  const iso = r.timestamp >= 0 ? new Date(r.timestamp).toISOString() : "";
  return `<tr data-testid="record-row" data-offset="${r.offset}"><td class="num">${r.offset}</td><td class="ts" title="${esc(iso)}">${esc(fmtTime(r.timestamp))}</td>${recordCell(showBytes(r.key, format), "key")}${recordCell(showBytes(r.value, format), "value")}${recordCell(headers, "headers")}</tr>`;
}

function viewRecords(root, [topic, pStr], ctx) {
  const p = Number(pStr);
  // `next`: the offset after the last record shown (where Follow resumes).
  const st = { records: [], pending: [], format: "text", es: null, next: null, lso: null, hw: null, seq: 0, flush: 0, lastInput: "offset" };
  root.innerHTML = `
    <div class="crumbs">${link("#/topics", "Topics")} / ${link(href.topic(topic), topic)} / partition ${p}</div>
    <div class="view-head"><h1>${esc(topic)} <span class="muted">partition ${p}</span></h1></div>
    <div class="toolbar">
      <label>Offset <input data-testid="seek-offset" type="number" min="0" step="1"></label>
      <label>or time <input data-testid="seek-time" type="datetime-local" step="1"></label>
      <button type="button" data-testid="seek">Seek</button>
      <button type="button" data-testid="latest">Latest ${PAGE}</button>
      <span class="sep"></span>
      <button type="button" data-testid="older">◀ Older</button>
      <button type="button" data-testid="newer">Newer ▶</button>
      <span class="sep"></span>
      <label class="check"><input type="checkbox" data-testid="follow" checked> Follow</label>
      <label>Format <select data-testid="format-toggle"><option value="text">text</option><option value="hex">hex</option></select></label>
    </div>
    <div class="meta" data-testid="partition-status"></div>
    <div class="notice" data-testid="notice" hidden></div>
    <div class="scroll"><table class="grid records" data-testid="records-table">
      <thead><tr><th class="num">Offset</th><th>Timestamp</th><th>Key</th><th>Value</th><th>Headers</th></tr></thead>
      <tbody></tbody></table></div>`;
  const el = (id) => $(`[data-testid=${id}]`, root);
  const [tbody, scroller, follow] = [$("tbody", root), $(".scroll", root), el("follow")];

  const notice = (text) => {
    el("notice").hidden = !text;
    el("notice").textContent = text || "";
  };
  const renderStatus = () => {
    const n = st.records.length;
    const shown = n ? `showing ${fmtNum(st.records[0].offset)}–${fmtNum(last(st.records).offset)} (${n} rows)` : "no rows shown";
    el("partition-status").textContent = `log start ${fmtNum(st.lso)} · high watermark ${fmtNum(st.hw)} · ${shown}${st.es ? " · following" : ""}`;
  };
  const renderRows = () => {
    tbody.innerHTML = st.records.length
      ? st.records.map((r) => recordRow(r, st.format)).join("")
      : `<tr class="empty"><td colspan="5">No records in this range</td></tr>`;
    renderStatus();
  };

  // Follow: an EventSource from `next`; records are appended in batches.
  const closeStream = () => {
    if (st.es) st.es.close();
    clearTimeout(st.flush);
    [st.es, st.flush, st.pending] = [null, 0, []];
  };
  const flush = () => {
    st.flush = 0;
    if (!ctx.alive() || !st.pending.length) return;
    const atBottom = scroller.scrollHeight - scroller.scrollTop - scroller.clientHeight < 40;
    const batch = st.pending.splice(0);
    if (!st.records.length) tbody.innerHTML = "";
    st.records.push(...batch);
    tbody.insertAdjacentHTML("beforeend", batch.map((r) => recordRow(r, st.format)).join(""));
    const drop = st.records.length - MAX_ROWS;
    if (drop > 0) {
      st.records.splice(0, drop);
      for (let i = 0; i < drop && tbody.firstElementChild; i++) tbody.firstElementChild.remove();
    }
    if (atBottom) scroller.scrollTop = scroller.scrollHeight;
    st.hw = Math.max(st.hw ?? 0, st.next);
    renderStatus();
  };
  const stopFollowing = (err) => {
    closeStream();
    follow.checked = false;
    if (err) showError(err, true);
    renderStatus();
  };
  const openStream = () => {
    closeStream();
    if (!ctx.alive() || st.next == null) return;
    const es = new EventSource(`${partPath(topic, p)}/records?offset=${st.next}&encoding=base64`);
    st.es = es;
    es.addEventListener("record", (e) => {
      const r = parseJson(e.data);
      if (st.es !== es || !r || r.offset < st.next) return;
      st.next = r.offset + 1;
      // Bounded even while a background tab throttles the flush timer.
      if (st.pending.length >= MAX_ROWS) st.pending.shift();
      st.pending.push(decodeRecord(r));
      if (!st.flush) st.flush = setTimeout(flush, 100);
    });
    es.addEventListener("error", (e) => {
      if (st.es !== es) return;
      // A problem sent by the agent ends the stream: do not reconnect.
      if (e.data) return stopFollowing(problemError(parseJson(e.data) || { detail: e.data }, 0, e.data));
      // Otherwise the browser reconnects by itself (resuming after Last-Event-ID)
      // unless the agent refused the stream.
      if (es.readyState === EventSource.CLOSED) {
        stopFollowing(new ApiError("stream_closed", "the follow stream was closed; tick Follow to reopen it", 0));
      }
    });
    renderStatus();
  };
  ctx.onLeave(closeStream);

  /** Shows up to PAGE records from `offset`, then follows when asked. */
  const load = async (offset, { followAfter = false, keepIfEmpty = false, seq = ++st.seq } = {}) => {
    closeStream();
    follow.checked = followAfter;
    let r;
    try {
      r = await Api.records(topic, p, offset, PAGE);
    } catch (e) {
      if (seq === st.seq && e.code === "offset_out_of_range") {
        st.records = [];
        renderRows();
      }
      throw e;
    }
    if (!ctx.alive() || seq !== st.seq) return;
    clearError("action");
    [st.lso, st.hw] = [r.log_start_offset, r.high_watermark];
    if (keepIfEmpty && !r.records.length) {
      notice("No newer records yet.");
      return renderStatus();
    }
    st.records = r.records.map(decodeRecord);
    st.next = r.next_offset;
    renderRows();
    if (followAfter) openStream();
  };

  const latest = action(ctx, async () => {
    notice("");
    // Numbered before the wait, so a seek made meanwhile wins.
    const seq = ++st.seq;
    const o = await Api.offsets(topic, p);
    if (ctx.alive() && seq === st.seq) await load(Math.max(o.earliest_offset, o.latest_offset - PAGE), { followAfter: true, seq });
  });
  const seekOffset = action(ctx, async () => {
    const v = el("seek-offset").value.trim();
    if (!/^\d+$/.test(v)) return notice("Enter an offset (a non-negative integer).");
    notice("");
    await load(Number(v));
  });
  const seekTime = action(ctx, async () => {
    const v = el("seek-time").value;
    const ms = v ? new Date(v).getTime() : NaN; // datetime-local: local time
    if (!Number.isFinite(ms)) return notice("Enter a date and time.");
    const seq = ++st.seq;
    const o = await Api.offsets(topic, p, ms);
    if (!ctx.alive() || seq !== st.seq) return;
    if (o.timestamp_offset == null) {
      notice(`No record at or after ${fmtTime(ms)}; following from the end of the partition.`);
      await load(o.latest_offset, { followAfter: true, seq });
    } else {
      notice(`First record at or after ${fmtTime(ms)}: offset ${fmtNum(o.timestamp_offset)}.`);
      await load(o.timestamp_offset, { seq });
    }
  });

  el("seek-offset").addEventListener("input", () => (st.lastInput = "offset"));
  el("seek-offset").addEventListener("keydown", (e) => e.key === "Enter" && seekOffset());
  el("seek-time").addEventListener("input", () => (st.lastInput = "time"));
  el("seek-time").addEventListener("change", () => {
    st.lastInput = "time";
    if (el("seek-time").value) seekTime();
  });
  el("seek").onclick = () => (st.lastInput === "time" && el("seek-time").value ? seekTime() : seekOffset());
  el("latest").onclick = latest;
  el("older").onclick = action(ctx, async () => {
    notice("");
    const base = st.records.length ? st.records[0].offset : st.next ?? 0;
    await load(Math.max(st.lso ?? 0, base - PAGE));
  });
  el("newer").onclick = action(ctx, async () => {
    notice("");
    await load(st.next ?? 0, { keepIfEmpty: true });
  });
  follow.onchange = () => {
    if (!follow.checked) stopFollowing();
    else if (st.next == null) latest();
    else openStream();
  };
  el("format-toggle").onchange = (e) => {
    st.format = e.target.value;
    renderRows();
  };
  tbody.addEventListener("click", (e) => {
    const cell = e.target.closest("td.trunc");
    if (cell) cell.classList.toggle("expanded");
  });

  latest();
  return async () => {
    const o = await Api.offsets(topic, p);
    if (!ctx.alive()) return;
    [st.lso, st.hw] = [o.earliest_offset, Math.max(o.latest_offset, st.hw ?? 0)];
    renderStatus();
  };
}
