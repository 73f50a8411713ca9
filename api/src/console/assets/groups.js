/*
 * Silt web console: the consumer-group, share-group, compactor and agent
 * views.
 * Embedded in the agent binary with include_str! and served at /ui/groups.js;
 * no build step. The console's scripts are classic scripts sharing one
 * global scope, loaded in order: lib.js, topics.js, groups.js, app.js.
 */
"use strict";

// ---------------------------------------------------------------------------
// View: consumer groups
// ---------------------------------------------------------------------------

function viewGroups(root, _params, ctx) {
  root.innerHTML = `<div class="view-head"><h1>Consumer groups</h1></div><div id="groups-body"><p class="muted">Loading…</p></div>`;
  const body = $("#groups-body", root);
  return async () => {
    const r = await Api.groups();
    if (!ctx.alive()) return;
    const rows = (r.groups || []).map((g) => `<tr data-testid="group-row" data-group="${esc(g.name)}">${td(link(href.group(g.name), g.name))}${td(esc(g.protocol ?? "–"))}${tdNum(g.generation)}${tdNum(g.members)}</tr>`);
    const more = r.next_after ? `<p class="muted" data-testid="more-groups">More groups not shown.</p>` : "";
    setHtml(body, table("groups-table", ["Name", "Protocol", "num:Generation", "num:Members"], rows, "No consumer groups yet") + more);
  };
}

function viewGroup(root, [name], ctx) {
  root.innerHTML = `
    <div class="crumbs">${link("#/groups", "Consumer groups")} / ${esc(name)}</div>
    <div class="view-head"><h1>${esc(name)}</h1></div>
    <div id="group-meta"></div>
    <h2>Members</h2><div id="group-members"></div>
    <h2>Partitions</h2><div id="group-parts"></div>
    <div class="charts">${chartBox("chart-lag")}</div>`;
  const [meta, members, parts] = [$("#group-meta", root), $("#group-members", root), $("#group-parts", root)];

  return async () => {
    const { values: [g, h], error } = await settle([Api.group(name), Api.history(["silt_group_lag_records"])]);
    if (!ctx.alive()) return;
    if (g) {
      const [ms, ps] = [g.members || [], g.partitions || []];
      setHtml(meta, kv([
        ["State", esc(g.state), "group-state"],
        ["Generation", esc(fmtNum(g.generation))],
        ["Protocol", esc(g.protocol ?? "–")],
        ["Total lag", esc(fmtNum(ps.reduce((n, p) => n + (p.lag ?? 0), 0))), "total-lag"],
      ]));
      const mrows = ms.map((m) => `<tr data-testid="member-row" data-member="${esc(m.member_id)}">${td(`<code>${esc(m.member_id)}</code>`)}${td(yesNo(m.live), m.live ? "ok" : "bad")}${td(fmtWhen(m.expires_ms))}${td(esc((m.assignments || []).map((a) => `${a.topic}/${a.partition}`).join(", ") || "–"))}</tr>`);
      setHtml(members, table("group-members", ["Member id", "Live", "Expires", "Assignments"], mrows, "No members"));
      const prows = ps.map((p) => `<tr data-testid="group-partition-row" data-topic="${esc(p.topic)}" data-partition="${p.partition}">${td(link(href.topic(p.topic), p.topic))}${td(link(href.partition(p.topic, p.partition), p.partition), "num")}${tdNum(p.committed_offset, "committed")}${tdNum(p.high_watermark, "high-watermark")}${tdNum(p.lag, "lag")}${td(p.owner ? `<code>${esc(p.owner)}</code>` : "–")}${td(p.metadata == null ? "–" : esc(p.metadata))}</tr>`);
      setHtml(parts, table("group-partitions", ["Topic", "num:Partition", "num:Committed", "num:High watermark", "num:Lag", "Owner", "Metadata"], prows, "No committed or assigned partitions"));
    }
    const series = pick(h, "silt_group_lag_records", { group: name })
      .map((s) => ({ label: `${s.labels.topic}/${s.labels.partition}`, values: s.values }))
      .sort((a, b) => a.label.localeCompare(b.label, undefined, { numeric: true }));
    lineChart($("[data-testid=chart-lag]", root), { title: "Lag", unit: "records", times: h ? h.times : [], series });
    if (error) throw error;
  };
}

// ---------------------------------------------------------------------------
// View: share groups
// ---------------------------------------------------------------------------

const SHARE_DETAIL_MAX = 50;
const fmtOldest = (ms) => esc(ms == null ? "–" : fmtDuration(ms));

function viewShares(root, _params, ctx) {
  root.innerHTML = `<div class="view-head"><h1>Share groups</h1></div><div id="shares-body"><p class="muted">Loading…</p></div>`;
  const body = $("#shares-body", root);
  const headers = ["Name", "Topics", "num:Available", "num:Leased", "num:Accepted", "num:Dead-lettered", "num:Oldest unacked"];
  return async () => {
    const r = await Api.shares();
    if (!ctx.alive()) return;
    const names = [...(r.share_groups || [])].sort();
    // Totals of the first few groups; a failed detail just shows dashes.
    const { values: details } = await settle(names.slice(0, SHARE_DETAIL_MAX).map((n) => Api.share(n)));
    if (!ctx.alive()) return;
    const rows = names.map((n, i) => {
      const d = details[i];
      const t = (d && d.totals) || {};
      return `<tr data-testid="share-row" data-share="${esc(n)}">${td(link(href.share(n), n))}${td(esc(d && Array.isArray(d.topics) ? d.topics.join(", ") : "–"))}${tdNum(t.available)}${tdNum(t.leased)}${tdNum(t.accepted)}${tdNum(t.dead_lettered)}${td(fmtOldest(t.oldest_unacked_ms), "num")}</tr>`;
    });
    const more = names.length > SHARE_DETAIL_MAX ? `<p class="muted">Totals shown for the first ${SHARE_DETAIL_MAX} groups.</p>` : "";
    setHtml(body, table("shares-table", headers, rows, "No share groups yet") + more);
  };
}

function viewShare(root, [name], ctx) {
  root.innerHTML = `
    <div class="crumbs">${link("#/shares", "Share groups")} / ${esc(name)}</div>
    <div class="view-head"><h1>${esc(name)}</h1></div>
    <div class="cols"><div id="share-config"></div><div id="share-totals"></div></div>
    <h2>Partitions</h2><div id="share-parts"></div>
    <div class="charts">${chartBox("chart-share")}</div>`;
  const [config, totals, parts] = [$("#share-config", root), $("#share-totals", root), $("#share-parts", root)];
  const headers = ["Topic", "num:Partition", "num:Window start", "num:Window next", "num:High watermark", "num:Available", "num:Leased", "num:Accepted", "num:Dead-lettered", "num:Redelivered", "num:Oldest unacked"];

  return async () => {
    const { values: [g, h], error } = await settle([Api.share(name), Api.history(["silt_share_available", "silt_share_leased"])]);
    if (!ctx.alive()) return;
    if (g) {
      setHtml(config, `<h2>Config</h2>${kv([
        ["Topics", (g.topics || []).map((t) => link(href.topic(t), t)).join(", ") || "–"],
        ["Lease", esc(fmtDuration(g.lease_ms))],
        ["Max deliveries", esc(fmtNum(g.max_deliveries))],
        ["Max in flight", esc(fmtNum(g.max_in_flight))],
        ["Dead-letter topic", g.dlq_topic ? link(href.topic(g.dlq_topic), g.dlq_topic) : "–"],
        ["Backoff", json(g.backoff)],
        ["Ordering", json(g.ordering)],
        ["Start", json(g.start)],
      ])}`);
      const t = g.totals || {};
      setHtml(totals, `<h2>Totals</h2><div data-testid="share-totals">${kv([
        ["Available", esc(fmtNum(t.available)), "total-available"],
        ["Leased", esc(fmtNum(t.leased)), "total-leased"],
        ["Accepted", esc(fmtNum(t.accepted)), "total-accepted"],
        ["Dead-lettered", esc(fmtNum(t.dead_lettered))],
        ["Redelivered", esc(fmtNum(t.redelivered))],
        ["Oldest unacked", fmtOldest(t.oldest_unacked_ms)],
      ])}</div>`);
      const rows = (g.partitions || []).map((p) => `<tr data-testid="share-partition-row" data-topic="${esc(p.topic)}" data-partition="${p.partition}">${td(link(href.topic(p.topic), p.topic))}${td(link(href.partition(p.topic, p.partition), p.partition), "num")}${tdNum(p.window_start)}${tdNum(p.window_next)}${tdNum(p.high_watermark)}${tdNum(p.available)}${tdNum(p.leased)}${tdNum(p.accepted)}${tdNum(p.dead_lettered)}${tdNum(p.redelivered)}${td(fmtOldest(p.oldest_unacked_ms), "num")}</tr>`);
      setHtml(parts, table("share-partitions", headers, rows, "No partitions"));
    }
    lineChart($("[data-testid=chart-share]", root), {
      title: "Available and leased", unit: "records", times: h ? h.times : [],
      series: [
        { label: "available", values: gaugeOf(h, "silt_share_available", { group: name }) },
        { label: "leased", values: gaugeOf(h, "silt_share_leased", { group: name }) },
      ],
    });
    if (error) throw error;
  };
}

// ---------------------------------------------------------------------------
// View: compactor
// ---------------------------------------------------------------------------

/** The last round's report as rows of section / field / value. */
function reportRows(report) {
  const val = (v) => (v !== null && typeof v === "object" ? json(v) : esc(typeof v === "number" ? fmtNum(v) : v));
  const rows = [];
  for (const [section, v] of Object.entries(report || {})) {
    if (v !== null && typeof v === "object" && !Array.isArray(v)) {
      for (const [field, x] of Object.entries(v)) rows.push(`<tr>${td(esc(section))}${td(esc(field))}${td(val(x), "num")}</tr>`);
    } else {
      rows.push(`<tr>${td(esc(section))}${td("")}${td(val(v), "num")}</tr>`);
    }
  }
  return rows;
}

function viewCompactor(root, _params, ctx) {
  root.innerHTML = `<div data-testid="compactor"><div class="view-head"><h1>Compactor</h1></div>
    <div id="compactor-body"><p class="muted">Loading…</p></div><div class="charts" id="compactor-charts"></div></div>`;
  const [body, charts] = [$("#compactor-body", root), $("#compactor-charts", root)];

  return async () => {
    const { values: [c, h], error } = await settle([Api.cluster(), Api.history(["silt_compactor_archive_lag_records"])]);
    if (!ctx.alive()) return;
    if (c) {
      setVersion(c);
      const now = c.agent.now_ms;
      const { lease, last_round: lr } = c.compactor || {};
      let html = kv(lease
        ? [["Lease holder", `<code>${esc(lease.holder)}</code>`, "lease-holder"], ["Lease expires", fmtWhen(lease.expires_ms, now)]]
        : [["Lease", `<span class="muted">no compactor holds the lease</span>`, "lease-holder"]]);
      if (!lr) {
        html += `<p class="empty-note" data-testid="compactor-empty">No compactor has run yet.</p>`;
      } else {
        const rep = lr.report || {};
        html += kv([
          ["Last round by", `<code>${esc(lr.holder)}</code>`],
          ["Last round finished", fmtWhen(lr.finished_ms, now), "last-round"],
          ["Duration", esc(fmtDuration(lr.duration_ms))],
          ["Rounds", esc(fmtNum(lr.rounds))],
          ["Archive lag records", esc(fmtNum(rep.archive && rep.archive.lag_records)), "archive-lag"],
          ["Last merge", fmtWhen(lr.last_merge_ms, now)],
          ["Last GC", fmtWhen(lr.last_collect_ms, now)],
        ]);
        html += `<h2>Last round report</h2>${table("compactor-report", ["Section", "Field", "num:Value"], reportRows(rep), "Empty report")}`;
      }
      setHtml(body, html);
    }
    // The archive-lag gauge exists only where a compactor runs in this process.
    if (pick(h, "silt_compactor_archive_lag_records").length) {
      if (!$("[data-testid=chart-archive-lag]", charts)) charts.innerHTML = chartBox("chart-archive-lag");
      lineChart($("[data-testid=chart-archive-lag]", charts), {
        title: "Archive lag", unit: "records", times: h.times,
        series: [{ label: "archive lag", values: gaugeOf(h, "silt_compactor_archive_lag_records") }],
      });
    } else {
      charts.innerHTML = "";
    }
    if (error) throw error;
  };
}

// ---------------------------------------------------------------------------
// View: agent health and canary probe
// ---------------------------------------------------------------------------

function viewAgent(root, _params, ctx) {
  root.innerHTML = `<div data-testid="agent"><div class="view-head"><h1>Agent</h1></div>
    <div class="cols"><div id="agent-body"></div><div id="sequencer-body"></div></div>
    <section data-testid="probe"><h2>Probe</h2><div id="probe-body"></div>
      <div class="charts" id="probe-charts" hidden>${chartBox("chart-probe-latency")}${chartBox("chart-probe-availability")}</div>
    </section></div>`;
  const [body, seq, probe, charts] = ["#agent-body", "#sequencer-body", "#probe-body", "#probe-charts"].map((s) => $(s, root));

  return async () => {
    const { values: [c, h], error } = await settle([Api.cluster(), Api.history(["silt_probe_available", "silt_probe_e2e_last_ms", "silt_probe_produce_total"])]);
    if (!ctx.alive()) return;
    if (c) {
      setVersion(c);
      const a = c.agent;
      const pct = a.max_inflight_bytes > 0 ? Math.min(100, (100 * a.inflight_bytes) / a.max_inflight_bytes).toFixed(1) : "0";
      setHtml(body, `<h2>Health</h2>${kv([
        ["Version", esc(a.version), "agent-version"],
        ["Started", `<span class="muted">${esc(fmtTime(a.started_ms))}</span>`],
        ["Uptime", esc(fmtDuration(a.now_ms - a.started_ms)), "uptime"],
        ["Shutting down", a.shutting_down ? `<span class="bad">yes</span>` : "no", "shutting-down"],
        ["In-flight bytes", `<div class="bar" data-testid="inflight" title="${pct}%"><div style="width:${pct}%"></div></div> ${esc(fmtBytes(a.inflight_bytes))} / ${esc(fmtBytes(a.max_inflight_bytes))}`],
      ])}`);
      const s = c.sequencer || {};
      setHtml(seq, `<h2>Sequencer</h2>${kv([
        ["Enabled", yesNo(s.enabled)],
        ["Role", esc(s.role ?? "–"), "sequencer-role"],
        ["Holder", s.holder_url ? `<code>${esc(s.holder_url)}</code>` : "–"],
        ["Lease expires", fmtWhen(s.lease_expires_ms, a.now_ms)],
      ])}`);
      const pr = c.probe || { enabled: false };
      charts.hidden = !pr.enabled;
      if (!pr.enabled) {
        setHtml(probe, `<p data-testid="probe-disabled">The canary probe is disabled. Start the agent with <code>--probe true</code> to enable it.</p>`);
      } else {
        // Before the canary's first produce its gauges read 0: not an outage.
        const started = gaugeOf(h, "silt_probe_produce_total").map((n) => n != null && n > 0);
        const since = (values) => values.map((v, i) => (started[i] ? v : null));
        const [availability, latencies] = [since(gaugeOf(h, "silt_probe_available")), since(gaugeOf(h, "silt_probe_e2e_last_ms"))];
        const avail = last(availability);
        const latency = last(latencies);
        const status = avail == null ? `<span class="muted">unknown</span>` : avail >= 1 ? `<span class="ok">available</span>` : `<span class="bad">unavailable</span>`;
        setHtml(probe, kv([
          ["Status", status, "probe-status"],
          ["Last end-to-end latency", esc(latency == null ? "–" : `${fmtTip(latency)} ms`), "probe-latency"],
          ["Canary topic", link(href.topic(pr.topic), pr.topic)],
          ["Interval", esc(fmtDuration(pr.interval_ms))],
        ]));
        const times = h ? h.times : [];
        lineChart($("[data-testid=chart-probe-latency]", root), {
          title: "End-to-end latency", unit: "ms", times,
          series: [{ label: "e2e latency", values: latencies }],
        });
        lineChart($("[data-testid=chart-probe-availability]", root), {
          title: "Availability", unit: "1 = available", times, yMax: 1,
          series: [{ label: "available", values: availability }],
        });
      }
    }
    if (error) throw error;
  };
}
