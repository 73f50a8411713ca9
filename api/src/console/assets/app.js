/*
 * Silt web console: the router and start-up, loaded last (after lib.js,
 * topics.js and groups.js, which it calls). A single-page app over the
 * agent's own /v1 HTTP API, embedded in the agent binary with include_str!
 * and served at /ui/app.js: no build step, no dependencies, no network
 * access except the same-origin agent API. Each view (topics.js, groups.js)
 * mounts its static layout and returns its refresh function, which the
 * router calls every 2 s while the view is shown.
 */
"use strict";

// ---------------------------------------------------------------------------
// Router and polling
// ---------------------------------------------------------------------------

const POLL_MS = 2000;

const ROUTES = [
  { re: /^\/topics$/, nav: "topics", view: viewTopics },
  { re: /^\/topics\/([^/]+)$/, nav: "topics", view: viewTopic },
  { re: /^\/topics\/([^/]+)\/partitions\/(\d+)$/, nav: "topics", view: viewRecords },
  { re: /^\/groups$/, nav: "groups", view: viewGroups },
  { re: /^\/groups\/([^/]+)$/, nav: "groups", view: viewGroup },
  { re: /^\/shares$/, nav: "shares", view: viewShares },
  { re: /^\/shares\/([^/]+)$/, nav: "shares", view: viewShare },
  { re: /^\/compactor$/, nav: "compactor", view: viewCompactor },
  { re: /^\/agent$/, nav: "agent", view: viewAgent },
];

// One view is live at a time; `token` names it, so that late answers and
// timers of a view that was left are dropped.
const router = { token: 0, poll: null, leave: [] };

const safeDecode = (s) => { try { return decodeURIComponent(s); } catch { return s; } };

function leaveView() {
  router.token++;
  if (router.poll) clearTimeout(router.poll.timer);
  router.poll = null;
  for (const fn of router.leave.splice(0)) try { fn(); } catch (e) { console.error(e); }
}

/** Runs the view's refresh, then schedules the next; never two at once. */
async function runPoll(poll, ctx) {
  if (!ctx.alive()) return;
  if (poll.running) return void (poll.again = true);
  clearTimeout(poll.timer);
  poll.running = true;
  try {
    await poll.refresh();
    if (ctx.alive()) {
      clearError("poll");
      markUpdated();
    }
  } catch (e) {
    if (ctx.alive()) showError(e);
  }
  poll.running = false;
  if (!ctx.alive()) return;
  if (poll.again) {
    poll.again = false;
    runPoll(poll, ctx);
  } else {
    poll.timer = setTimeout(() => runPoll(poll, ctx), POLL_MS);
  }
}

function navigate() {
  if (!/^#\/./.test(location.hash)) history.replaceState(null, "", "#/topics");
  leaveView();
  closeModal();
  clearError("poll", "action");
  const token = router.token;
  const path = location.hash.slice(1).replace(/\/+$/, "");
  const route = ROUTES.find((r) => r.re.test(path));
  for (const a of document.querySelectorAll("#nav a")) a.classList.toggle("active", !!route && a.dataset.nav === route.nav);
  const root = $("#view");
  if (!route) {
    root.innerHTML = `<h1>Not found</h1><p>No view at <code>${esc(path)}</code>. ${link("#/topics", "Go to topics")}.</p>`;
    return;
  }
  const params = route.re.exec(path).slice(1).map(safeDecode);
  const poll = { timer: 0, running: false, again: false, refresh: null };
  const ctx = {
    alive: () => token === router.token,
    onLeave: (fn) => router.leave.push(fn),
    kick: () => runPoll(poll, ctx),
  };
  router.poll = poll;
  root.innerHTML = "";
  try {
    poll.refresh = route.view(root, params, ctx);
  } catch (e) {
    return showError(e);
  }
  runPoll(poll, ctx);
}

/** Wraps a user action: its failure stays in the banner until dismissed. */
const action = (ctx, fn) => async (...args) => {
  try {
    await fn(...args);
  } catch (e) {
    if (ctx.alive()) showError(e, true);
  }
};

// ---------------------------------------------------------------------------
// Start
// ---------------------------------------------------------------------------

function start() {
  $("#error-close").onclick = () => clearError("poll", "action");
  $("#modal").addEventListener("mousedown", (e) => e.target.id === "modal" && closeModal());
  document.addEventListener("keydown", (e) => e.key === "Escape" && !$("#modal").hidden && closeModal());
  window.addEventListener("error", (e) => showError(e.error || new Error(e.message)));
  window.addEventListener("unhandledrejection", (e) => {
    e.preventDefault();
    showError(e.reason);
  });
  window.addEventListener("hashchange", navigate);
  Api.cluster().then(setVersion, () => {});
  navigate();
}

start();
