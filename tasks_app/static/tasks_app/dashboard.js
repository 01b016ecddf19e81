/* taskqueue live dashboard.
 *
 * The page embeds a snapshot (#tq-initial) and its settings (#tq-config); from then on
 * everything comes from the /ws event stream:
 *   queue.depth  -> pending per priority (the depth chart),
 *   queue.stats  -> cluster totals; their deltas give exact completed and failed per second,
 *   (named queues: a queue.depth or task event with a queue refetches the snapshot's
 *   per-queue figures, at most once a second; so does a schedule.* event, which also
 *   refreshes the schedules panel: next runs and the state of each last task; a workflow.*
 *   event or a task event with a queue refreshes the workflows panel the same way),
 *   worker.*     -> the workers table, task.* -> the feed and which worker is busy.
 * When the socket drops it reconnects with exponential backoff (with jitter); before each
 * reconnect it fetches a fresh snapshot and socket token, so nothing missed stays wrong.
 */
(function () {
  "use strict";

  const PRIORITIES = ["critical", "high", "normal", "low"];
  const BACKOFF_FIRST = 500;
  const BACKOFF_MAX = 30000;
  const STABLE_AFTER = 5000;
  const LEFT_WORKER_KEPT = 60000;
  const NAMED_REFRESH_MS = 1000;
  const RATE_AVERAGE_SECONDS = 5;
  const TASKS_TRACKED = 10000;
  const FEED_GROUPS = {
    all: () => true,
    tasks: (e) => e.type.startsWith("task."),
    failures: (e) => ["task.failed", "task.dead_lettered", "task.retrying", "events.dropped",
                      "workflow.failed"].includes(e.type),
    workers: (e) => e.type.startsWith("worker."),
  };

  const $ = (selector, root) => (root || document).querySelector(selector);
  const config = JSON.parse($("#tq-config").textContent);
  const fmt = window.TQChart.formatNumber;

  /* ---------------------------------------------------------------- state */

  const state = {
    clockOffset: 0,            // server clock minus browser clock, ms
    depths: zeroDepths(),
    named: [],                 // per named queue: the API's figures (snapshot.named)
    typeLimits: [],            // per limited type: limits, running, parked (snapshot.type_limits)
    schedules: null,           // snapshot.schedules: {count, items} (null: not shown)
    workflows: null,           // snapshot.workflows: the latest, newest first (null: not shown)
    depthSamples: [],          // [{t: browser ms, values}], newest last
    totals: null,              // the last cluster totals (snapshot or queue.stats)
    lastStatsAt: null,         // browser ms when those totals arrived
    rate: new Map(),           // second (browser ms, floored) -> {completed, failed}
    workers: new Map(),        // id -> worker record (see upsertWorker)
    taskWorker: new Map(),     // running task id -> worker id
    progress: new Map(),       // running task id -> its last task.progress data (and when)
    feed: [],                  // newest first; the feed shows config.feed_size of them
    feedFilter: "all",
    feedPaused: false,
    droppedUntil: 0,
    error: null,
    openedAt: Math.floor(Date.now() / 1000) * 1000,
  };

  function zeroDepths() {
    return Object.fromEntries(PRIORITIES.map((p) => [p, 0]));
  }

  function serverNow() {
    return Date.now() + state.clockOffset;
  }

  function parseTime(iso) {
    const ms = Date.parse(iso);
    return Number.isNaN(ms) ? serverNow() : ms;
  }

  function applySnapshot(snapshot) {
    state.clockOffset = snapshot.server_time - Date.now();
    state.error = snapshot.error || null;
    if (state.error) return;
    const depths = zeroDepths();
    for (const q of snapshot.queues) depths[q.name] = q.depth;
    setDepths(depths);
    state.named = snapshot.named || [];
    state.typeLimits = snapshot.type_limits || [];
    state.schedules = snapshot.schedules || null;
    state.workflows = snapshot.workflows || null;
    state.totals = {...snapshot.totals};
    state.lastStatsAt = Date.now();
    const seen = new Set();
    for (const w of snapshot.workers) {
      seen.add(w.id);
      upsertWorker(w.id, {
        hostname: w.hostname, pid: w.pid, concurrency: w.concurrency, processed: w.processed,
        failed: w.failed, state: w.state === "busy" ? "idle" : w.state,
        lastSeen: w.last_heartbeat ? parseTime(w.last_heartbeat) : null, seenBy: "heartbeat",
        running: new Set(), assumedBusy: w.active_tasks,
      });
    }
    for (const [id, w] of state.workers) if (!seen.has(id) && w.state !== "left") state.workers.delete(id);
  }

  function setDepths(depths) {
    state.depths = {...zeroDepths(), ...depths};
    const t = Date.now();
    const last = state.depthSamples[state.depthSamples.length - 1];
    if (last && Math.floor(last.t / 1000) === Math.floor(t / 1000)) state.depthSamples.pop();
    state.depthSamples.push({t, values: state.depths});
  }

  /** Credit counter deltas to the seconds they happened in (exact totals, smooth bars). */
  function applyTotals(totals) {
    const now = Date.now();
    if (state.totals) {
      const since = state.lastStatsAt && now - state.lastStatsAt <= 2000 ? state.lastStatsAt : now - 1000;
      for (const key of ["completed", "failed"]) {
        const delta = (totals[key] || 0) - (state.totals[key] || 0);
        if (delta > 0) spread(key, delta, since, now);
      }
    }
    state.totals = {...totals};
    state.lastStatsAt = now;
    if (totals.running === 0) {
      state.taskWorker.clear();
      for (const w of state.workers.values()) { w.running.clear(); w.assumedBusy = 0; }
    }
  }

  function spread(key, amount, from, to) {
    const span = Math.max(to - from, 1);
    for (let s = Math.floor(from / 1000) * 1000; s < to; s += 1000) {
      const overlap = Math.min(to, s + 1000) - Math.max(from, s);
      if (overlap <= 0) continue;
      const bucket = state.rate.get(s) || {completed: 0, failed: 0};
      bucket[key] += amount * overlap / span;
      state.rate.set(s, bucket);
    }
  }

  function upsertWorker(id, fields) {
    const w = state.workers.get(id) || {
      id, hostname: "", pid: null, concurrency: 0, processed: 0, failed: 0, state: "idle",
      lastSeen: null, seenBy: "", running: new Set(), assumedBusy: 0, leftAt: null,
    };
    Object.assign(w, fields);
    state.workers.set(id, w);
    return w;
  }

  function workerState(w) {
    if (["paused", "stopping", "left"].includes(w.state)) return w.state;
    return w.running.size + w.assumedBusy > 0 ? "busy" : "idle";
  }

  /* --------------------------------------------------------------- events */

  function onEvent(event) {
    const data = event.data || {};
    if (event.type === "queue.depth" || data.queue || event.type.startsWith("schedule.")
        || event.type.startsWith("workflow.")) namedRefresh.soon();
    if (event.type === "queue.depth") setDepths(data.queue_depths || {});
    else if (event.type === "queue.stats") applyTotals(data);
    else if (event.type === "events.dropped") state.droppedUntil = Date.now() + 5000;
    else if (event.type.startsWith("worker.")) onWorkerEvent(event, data);
    else if (event.type.startsWith("task.")) { onTaskEvent(event, data); onProgressEvent(event, data); }
    if (!event.type.startsWith("queue.") && event.type !== "worker.heartbeat"
        && event.type !== "task.progress") addToFeed(event);
    render.soon();
  }

  function onWorkerEvent(event, data) {
    const fields = {lastSeen: parseTime(event.timestamp), seenBy: event.type};
    if (data.hostname) fields.hostname = data.hostname;
    if (data.concurrency) fields.concurrency = data.concurrency;
    if (event.type === "worker.left") {
      Object.assign(fields, {state: "left", leftAt: Date.now()});
    } else if (event.type === "worker.joined") {
      Object.assign(fields, {state: "idle", leftAt: null, running: new Set(), assumedBusy: 0});
    } else if (data.state) {
      fields.state = data.state === "busy" ? "idle" : data.state;
    }
    if (event.type === "worker.heartbeat") {
      Object.assign(fields, {processed: data.processed, failed: data.failed, leftAt: null});
      // The worker's own count is authoritative: restart tracking from it.
      Object.assign(fields, {running: new Set(), assumedBusy: data.active_tasks || 0});
    }
    upsertWorker(data.worker_id, fields);
  }

  function onTaskEvent(event, data) {
    const id = data.worker_id || state.taskWorker.get(data.task_id);
    if (!id) return;
    const w = state.workers.get(id) || upsertWorker(id, {});
    w.lastSeen = parseTime(event.timestamp);
    w.seenBy = event.type;
    if (event.type === "task.started") {
      w.running.add(data.task_id);
      w.assumedBusy = 0;
      state.taskWorker.set(data.task_id, id);
      forgetMissedEnds(w);
    } else if (["task.completed", "task.failed"].includes(event.type)) {
      w.running.delete(data.task_id);
      w.assumedBusy = 0;
      state.taskWorker.delete(data.task_id);
      if (event.type === "task.completed") w.processed += 1; else w.failed += 1;
    } else if (event.type === "task.requeued") {  // taken, never run, back in line
      w.running.delete(data.task_id);
      state.taskWorker.delete(data.task_id);
    }
  }

  /* ------------------------------------------------- progress of running tasks */

  const PROGRESS_SHOWN = 20;
  const PROGRESS_STALE_MS = 300000;  // a bar whose task's end event was thinned away goes
  const PROGRESS_ENDS = ["task.completed", "task.failed", "task.requeued", "task.cancelled",
                         "task.dead_lettered"];

  function onProgressEvent(event, data) {
    if (event.type === "task.progress") {
      state.progress.set(data.task_id, {...data, seenAt: Date.now()});
    } else if (PROGRESS_ENDS.includes(event.type)) {
      state.progress.delete(data.task_id);
    }
  }

  function renderProgress() {
    const list = $("#progress-list");
    for (const [id, p] of state.progress) {
      if (Date.now() - p.seenAt > PROGRESS_STALE_MS) state.progress.delete(id);
    }
    const shown = [...state.progress.values()].slice(-PROGRESS_SHOWN);
    $("#progress-panel").hidden = shown.length === 0;
    const rows = shown.map((p) => {
      const row = list.querySelector(`li[data-task-id="${CSS.escape(p.task_id)}"]`) || progressRow(p);
      const known = typeof p.total === "number" && p.total > 0;
      const share = known ? Math.min(1, p.done / p.total) : null;
      const bar = row.querySelector(".bar");
      bar.classList.toggle("unknown", !known);
      bar.querySelector("i").style.width = known ? `${(share * 100).toFixed(1)}%` : "100%";
      if (known) {
        bar.setAttribute("aria-valuemax", String(p.total));
        bar.setAttribute("aria-valuenow", String(p.done));
      } else {
        bar.removeAttribute("aria-valuemax");
        bar.removeAttribute("aria-valuenow");
      }
      setCell(row, ".figures", known ? `${fmt(p.done)} / ${fmt(p.total)} (${Math.floor(share * 100)}%)` : fmt(p.done));
      setCell(row, ".message", p.message || "");
      return row;
    });
    rows.forEach((row, i) => { if (list.children[i] !== row) list.insertBefore(row, list.children[i] || null); });
    while (list.children.length > rows.length) list.lastElementChild.remove();
  }

  function progressRow(p) {
    const row = $("#progress-row").content.firstElementChild.cloneNode(true);
    row.dataset.taskId = p.task_id;
    row.querySelector(".type").textContent = p.type;
    row.querySelector(".id").textContent = p.task_id.slice(0, 8);
    row.querySelector(".id").title = p.task_id;
    return row;
  }

  /** A thinned stream can lose a task's end: a worker runs at most `concurrency` tasks. */
  function forgetMissedEnds(w) {
    for (const taskId of w.running) {
      if (!w.concurrency || w.running.size <= w.concurrency) break;
      w.running.delete(taskId);
      state.taskWorker.delete(taskId);
    }
    if (state.taskWorker.size > TASKS_TRACKED) state.taskWorker.clear();
  }

  function addToFeed(event) {
    state.feed.unshift(event);
    if (state.feed.length > config.feed_size * 5) state.feed.length = config.feed_size * 5;
  }

  /* --------------------------------------------------------------- socket */

  class LiveSocket {
    constructor(token) {
      this.token = token;
      this.attempt = 0;
      this.ws = null;
      this.timer = null;
      this.retryAt = null;
      this.status = "connecting";
      this.connect();
      window.addEventListener("online", () => this.reconnectNow());
    }

    url() {
      const scheme = location.protocol === "https:" ? "wss:" : "ws:";
      return `${scheme}//${location.host}${config.ws_path}?token=${encodeURIComponent(this.token)}`;
    }

    connect() {
      this.setStatus("connecting");
      const ws = new WebSocket(this.url());
      this.ws = ws;
      let stable = null;
      ws.onopen = () => {
        this.setStatus("live");
        stable = setTimeout(() => { this.attempt = 0; }, STABLE_AFTER);
      };
      ws.onmessage = (message) => {
        try { onEvent(JSON.parse(message.data)); } catch (err) { console.error(err); }
      };
      ws.onclose = (close) => {
        clearTimeout(stable);
        if (this.ws !== ws) return;
        this.ws = null;
        this.scheduleReconnect(close.code);
      };
    }

    scheduleReconnect(code) {
      const delay = Math.min(BACKOFF_MAX, BACKOFF_FIRST * 2 ** this.attempt);
      const jittered = delay / 2 + Math.random() * delay / 2;
      this.attempt += 1;
      this.retryAt = Date.now() + jittered;
      this.setStatus(code === 4401 ? "unauthorized" : "reconnecting");
      clearTimeout(this.timer);
      this.timer = setTimeout(() => this.resync(), jittered);
    }

    reconnectNow() {
      if (this.ws) return;
      clearTimeout(this.timer);
      this.resync();
    }

    /** Fetch a fresh snapshot and token, then connect; on failure back off again. */
    async resync() {
      this.setStatus("connecting");
      let reply;
      try {
        reply = await fetch(config.snapshot_url, {credentials: "same-origin",
                                                  headers: {Accept: "application/json"}});
      } catch (err) {
        this.scheduleReconnect(0);
        return;
      }
      if (reply.status === 403) { this.setStatus("signed-out"); return; }
      const body = await reply.json().catch(() => null);
      if (!body || !body.token) { this.scheduleReconnect(0); return; }
      this.token = body.token;
      applySnapshot(body.snapshot);
      render.now();
      this.connect();
    }

    setStatus(status) {
      this.status = status;
      renderStatus();
    }
  }

  /** Refetch the named queues' figures (no event carries them), at most once a second. */
  const namedRefresh = {
    timer: null,
    last: 0,
    soon() {
      if (this.timer) return;
      const wait = Math.max(0, this.last + NAMED_REFRESH_MS - Date.now());
      this.timer = setTimeout(() => this.run(), wait);
    },
    async run() {
      this.last = Date.now();
      try {
        const reply = await fetch(config.snapshot_url, {credentials: "same-origin",
                                                        headers: {Accept: "application/json"}});
        const body = reply.ok ? await reply.json() : null;
        if (body && body.snapshot && body.snapshot.named) {
          state.named = body.snapshot.named;
          state.typeLimits = body.snapshot.type_limits || [];
          state.schedules = body.snapshot.schedules || null;
          state.workflows = body.snapshot.workflows || null;
          render.soon();
        }
      } catch (err) { /* the socket's own reconnect resynchronises everything */ }
      this.timer = null;
    },
  };

  /* --------------------------------------------------------------- render */

  const depthChart = new window.TQChart($("#depth-chart"), {
    mode: "area", windowSeconds: config.window_seconds, label: "Pending tasks per priority",
    series: PRIORITIES.map((p) => ({key: p, label: p, className: `p-${p}`})),
  });
  const rateChart = new window.TQChart($("#rate-chart"), {
    mode: "bars", windowSeconds: config.window_seconds, label: "Completed and failed tasks per second",
    series: [{key: "completed", label: "completed", className: "s-completed"},
             {key: "failed", label: "failed", className: "s-failed"}],
  });

  /** One point a second: the depths known at the end of that second (none before page load). */
  function depthPoints(endSecond) {
    const points = [];
    const samples = state.depthSamples;
    let i = 0;
    let current = null;
    for (let t = endSecond - (config.window_seconds - 1) * 1000; t <= endSecond; t += 1000) {
      while (i < samples.length && samples[i].t < t + 1000) current = samples[i++].values;
      if (current) points.push({t, values: current});
    }
    return points;
  }

  /** One bar a second since the page opened (at most the window). */
  function ratePoints(endSecond) {
    const points = [];
    const first = Math.max(endSecond - (config.window_seconds - 1) * 1000, state.openedAt);
    for (let t = first; t <= endSecond; t += 1000) {
      points.push({t, values: state.rate.get(t) || {completed: 0, failed: 0}});
    }
    return points;
  }

  function recentRate(key, endSecond) {
    let sum = 0;
    for (let i = 0; i < RATE_AVERAGE_SECONDS; i++) {
      const bucket = state.rate.get(endSecond - i * 1000);
      if (bucket) sum += bucket[key];
    }
    return sum / RATE_AVERAGE_SECONDS;
  }

  function setText(selector, text) {
    const node = $(selector);
    if (node && node.textContent !== text) node.textContent = text;
  }

  function prune(endSecond) {
    const oldest = endSecond - config.window_seconds * 1000;
    for (const t of state.rate.keys()) if (t < oldest) state.rate.delete(t);
    while (state.depthSamples.length > 1 && state.depthSamples[1].t < oldest) state.depthSamples.shift();
    for (const [id, w] of state.workers) {
      if (w.state === "left" && w.leftAt && Date.now() - w.leftAt > LEFT_WORKER_KEPT) state.workers.delete(id);
    }
  }

  function renderAll() {
    const endSecond = Math.floor(Date.now() / 1000) * 1000;
    prune(endSecond);
    renderBanner();
    renderKpis(endSecond);
    depthChart.update(depthPoints(endSecond));
    rateChart.update(ratePoints(endSecond));
    renderLegends(endSecond);
    renderNamedQueues();
    renderTypeLimits();
    renderProgress();
    renderSchedules();
    renderWorkflows();
    renderWorkers();
    renderFeed();
  }

  function renderNamedQueues() {
    const body = $("#named-queues-body");
    const rows = state.named.map((q) => {
      const row = body.querySelector(`tr[data-named-queue="${CSS.escape(q.name)}"]`) || namedQueueRow(q.name);
      const st = q.paused ? "paused" : "active";
      row.dataset.state = st;
      setCell(row, ".depth", fmt(q.depth));
      for (const p of PRIORITIES) setCell(row, `.${p}`, fmt(q.queue_depths[p] || 0));
      setCell(row, ".scheduled", fmt(q.scheduled));
      setCell(row, ".dlq", fmt(q.dlq_size));
      setCell(row, ".state", st);
      row.querySelector(".state").className = `pill state ${st === "paused" ? "paused" : "idle"}`;
      return row;
    });
    rows.forEach((row, i) => { if (body.children[i] !== row) body.insertBefore(row, body.children[i] || null); });
    while (body.children.length > rows.length) body.lastElementChild.remove();
  }

  /** Read-only: each limited type's limits and counts (refreshed with the named queues). */
  function renderTypeLimits() {
    const body = $("#type-limits-body");
    $("#type-limits-panel").hidden = state.typeLimits.length === 0;
    const rows = state.typeLimits.map((t) => {
      let row = body.querySelector(`tr[data-type="${CSS.escape(t.type)}"]`);
      if (!row) {
        row = $("#type-limit-row").content.firstElementChild.cloneNode(true);
        row.dataset.type = t.type;
        row.querySelector(".name").textContent = t.type;
      }
      setCell(row, ".concurrency", t.concurrency === null ? "—" : fmt(t.concurrency));
      setCell(row, ".rate", t.rate || "—");
      setCell(row, ".running", fmt(t.running));
      setCell(row, ".parked", fmt(t.parked));
      return row;
    });
    rows.forEach((row, i) => { if (body.children[i] !== row) body.insertBefore(row, body.children[i] || null); });
    while (body.children.length > rows.length) body.lastElementChild.remove();
  }

  function renderSchedules() {
    const body = $("#schedules-body");
    if (!body || !state.schedules) return;
    const items = state.schedules.items;
    $("#schedules-empty").hidden = items.length > 0;
    $("#schedules-table").hidden = items.length === 0;
    const more = state.schedules.count - items.length;
    $("#schedules-count").textContent = more > 0 ? `${items.length} soonest of ${state.schedules.count}` : "";
    const rows = items.map((s) => {
      const row = body.querySelector(`tr[data-schedule="${CSS.escape(s.name)}"]`) || scheduleRow(s.name);
      const st = s.error ? "error" : (s.paused ? "paused" : "active");
      row.dataset.state = st;
      setCell(row, ".queue", s.queue);
      setCell(row, ".when", s.every !== null ? `every ${s.every}s` : `${s.cron} (${s.timezone})`);
      setCell(row, ".next", s.next_run_at ? `${clock(s.next_run_at)} (${untilText(s.next_run_at)})` : "—");
      setCell(row, ".last", s.last_run_at ? clock(s.last_run_at) : "—");
      const result = row.querySelector(".result");
      result.textContent = s.last_state || "—";
      result.className = `pill result ${s.last_state || ""}`;
      result.title = s.last_task_id || "";
      row.dataset.lastTask = s.last_task_id || "";
      const pill = row.querySelector(".state");
      pill.textContent = st;
      pill.className = `pill state ${st === "active" ? "idle" : st}`;
      pill.title = s.error || "";
      return row;
    });
    rows.forEach((row, i) => { if (body.children[i] !== row) body.insertBefore(row, body.children[i] || null); });
    while (body.children.length > rows.length) body.lastElementChild.remove();
  }

  function scheduleRow(name) {
    const row = $("#schedule-row").content.firstElementChild.cloneNode(true);
    row.dataset.schedule = name;
    row.querySelector(".name").textContent = name;
    return row;
  }

  function renderWorkflows() {
    const body = $("#workflows-body");
    if (!body || !state.workflows) return;
    const items = state.workflows;
    $("#workflows-empty").hidden = items.length > 0;
    $("#workflows-table").hidden = items.length === 0;
    const rows = items.map((w) => {
      const row = body.querySelector(`tr[data-workflow="${CSS.escape(w.id)}"]`) || workflowRow(w);
      row.dataset.state = w.state;
      setCell(row, ".queue", w.queue);
      setCell(row, ".steps", `${fmt(w.done)} / ${fmt(w.total)}`);
      const f = w.failed_step;
      setCell(row, ".stopped", f ? `step ${f.index} (${f.type}, ${f.state})` : "—");
      row.querySelector(".stopped").title = f ? f.task_id : "";
      const pill = row.querySelector(".state");
      pill.textContent = w.state;
      pill.className = `pill state ${w.state === "running" ? "busy" : w.state === "completed" ? "idle" : w.state}`;
      return row;
    });
    rows.forEach((row, i) => { if (body.children[i] !== row) body.insertBefore(row, body.children[i] || null); });
    while (body.children.length > rows.length) body.lastElementChild.remove();
  }

  function workflowRow(w) {
    const row = $("#workflow-row").content.firstElementChild.cloneNode(true);
    row.dataset.workflow = w.id;
    const link = row.querySelector(".id");
    link.textContent = w.id.slice(0, 8);
    link.title = w.id;
    if (w.url) link.href = w.url;
    return row;
  }

  function clock(iso) {
    return new Date(iso).toLocaleTimeString("en-GB");
  }

  function untilText(iso) {
    const seconds = Math.round((parseTime(iso) - serverNow()) / 1000);
    if (seconds <= 0) return "due";
    return seconds < 120 ? `in ${seconds}s` : seconds < 7200 ? `in ${Math.round(seconds / 60)}m` : `in ${Math.round(seconds / 3600)}h`;
  }

  function namedQueueRow(name) {
    const row = $("#named-queue-row").content.firstElementChild.cloneNode(true);
    row.dataset.namedQueue = name;
    row.querySelector(".name").textContent = name;
    return row;
  }

  function renderBanner() {
    const banner = $("#error-banner");
    banner.hidden = !state.error;
    if (state.error) setText("#error-banner", state.error);
    $("#dropped-banner").hidden = Date.now() > state.droppedUntil;
    const working = [...state.workers.values()].some((w) => w.state !== "left");
    $("#no-workers-banner").hidden = working || Boolean(state.error);
  }

  function renderKpis(endSecond) {
    const totals = state.totals || {};
    const pending = PRIORITIES.reduce((s, p) => s + state.depths[p], 0);
    setText("[data-kpi=pending]", fmt(pending));
    const busiest = PRIORITIES.filter((p) => state.depths[p] > 0).map((p) => `${p} ${fmt(state.depths[p])}`);
    setText("[data-kpi=pending-sub]", busiest.length ? busiest.join(" \u00b7 ") : "queues empty");
    $("[data-kpi=pending-sub]").title = $("[data-kpi=pending-sub]").textContent;
    setText("[data-kpi=running]", fmt(totals.running || 0));
    const live = [...state.workers.values()].filter((w) => w.state !== "left");
    const slots = live.reduce((s, w) => s + (w.concurrency || 0), 0);
    setText("[data-kpi=running-sub]", slots ? `of ${fmt(slots)} slots` : "no worker slots");
    setText("[data-kpi=completed]", `${fmt(recentRate("completed", endSecond))}/s`);
    setText("[data-kpi=completed-sub]", `${(totals.completed || 0).toLocaleString("en")} total`);
    setText("[data-kpi=failed]", `${fmt(recentRate("failed", endSecond))}/s`);
    setText("[data-kpi=failed-sub]", `${(totals.failed || 0).toLocaleString("en")} total \u00b7 ${(totals.retries || 0).toLocaleString("en")} retries`);
    const dlq = totals.dlq_size || 0;
    setText("[data-kpi=dlq]", fmt(dlq));
    $("#kpi-dlq").classList.toggle("alert", dlq > 0);
    const counts = {busy: 0, idle: 0, paused: 0, stopping: 0};
    for (const w of live) counts[workerState(w)] = (counts[workerState(w)] || 0) + 1;
    setText("[data-kpi=workers]", fmt(live.length));
    const parts = Object.entries(counts).filter(([, n]) => n > 0).map(([s, n]) => `${n} ${s}`);
    setText("[data-kpi=workers-sub]", parts.length ? parts.join(" \u00b7 ") : "none running");
  }

  function renderLegends(endSecond) {
    for (const p of PRIORITIES) setText(`#depth-legend [data-series=${p}] b`, fmt(state.depths[p]));
    setText("#rate-legend [data-series=completed] b", `${fmt(recentRate("completed", endSecond))}/s`);
    setText("#rate-legend [data-series=failed] b", `${fmt(recentRate("failed", endSecond))}/s`);
  }

  function ago(ms) {
    if (ms === null || ms === undefined) return "\u2014";
    const s = Math.max(0, Math.round((serverNow() - ms) / 1000));
    if (s < 60) return `${s} s ago`;
    if (s < 3600) return `${Math.floor(s / 60)} min ago`;
    return `${Math.floor(s / 3600)} h ago`;
  }

  function renderWorkers() {
    const body = $("#workers-body");
    const workers = [...state.workers.values()].sort((a, b) =>
      (a.state === "left") - (b.state === "left") || a.id.localeCompare(b.id));
    $("#workers-empty").hidden = workers.length > 0;
    $("#workers-table").hidden = workers.length === 0;
    const rows = workers.map((w) => {
      const row = body.querySelector(`tr[data-worker="${CSS.escape(w.id)}"]`) || workerRow(w.id);
      const st = workerState(w);
      row.dataset.state = st;
      setCell(row, ".state", st);
      row.querySelector(".state").className = `pill state ${st}`;
      setCell(row, ".host", [w.hostname, w.pid ? `pid ${w.pid}` : ""].filter(Boolean).join(" \u00b7 "));
      const busy = Math.min(w.running.size + w.assumedBusy, w.concurrency || Infinity);
      setCell(row, ".slots-text", `${busy}/${w.concurrency || "?"}`);
      row.querySelector(".meter i").style.width = w.concurrency ? `${(100 * busy) / w.concurrency}%` : "0";
      setCell(row, ".processed", fmt(w.processed));
      setCell(row, ".failed", fmt(w.failed));
      setCell(row, ".seen", ago(w.lastSeen));
      const seen = row.querySelector(".seen");
      seen.title = w.lastSeen ? `${new Date(w.lastSeen).toLocaleString()} (${w.seenBy})` : "";
      return row;
    });
    rows.forEach((row, i) => { if (body.children[i] !== row) body.insertBefore(row, body.children[i] || null); });
    while (body.children.length > rows.length) body.lastElementChild.remove();
  }

  function workerRow(id) {
    const row = $("#worker-row").content.firstElementChild.cloneNode(true);
    row.dataset.worker = id;
    row.querySelector(".id").textContent = id;
    row.querySelector(".id").title = id;
    return row;
  }

  function setCell(row, selector, text) {
    const node = row.querySelector(selector);
    if (node.textContent !== text) node.textContent = text;
  }

  const feedRendered = new WeakSet();

  function renderFeed() {
    const list = $("#feed");
    if (state.feedPaused) return;
    const wanted = state.feed.filter(FEED_GROUPS[state.feedFilter]).slice(0, config.feed_size);
    $("#feed-empty").hidden = wanted.length > 0;
    const fresh = [];
    for (const event of wanted) {
      if (feedRendered.has(event)) break;
      fresh.push(feedItem(event));
      feedRendered.add(event);
    }
    if (fresh.length) list.prepend(...fresh);
    const keep = new Set(wanted);
    for (const li of [...list.children]) if (!keep.has(li._event)) li.remove();
  }

  function feedItem(event) {
    const li = $("#feed-item").content.firstElementChild.cloneNode(true);
    const data = event.data || {};
    const kind = event.type.split(".")[1] || event.type;
    li._event = event;
    li.dataset.type = event.type;
    if (data.task_id) li.dataset.taskId = data.task_id;
    li.classList.add(`ev-${event.type.replace(".", "-")}`);
    const time = li.querySelector("time");
    time.dateTime = event.timestamp;
    time.textContent = new Date(parseTime(event.timestamp)).toLocaleTimeString("en-GB", {hour12: false});
    li.querySelector(".badge").textContent = event.type.startsWith("worker.") ? `worker ${kind}` : kind.replace("_", " ");
    const what = li.querySelector(".what");
    if (event.type.startsWith("task.")) {
      what.append(el("b", data.type), el("span", data.priority, `prio p-${data.priority}`),
                  el("span", data.queue || "default", "queue"),
                  el("code", (data.task_id || "").slice(0, 8)));
      what.querySelector("code").title = data.task_id;
    } else if (event.type.startsWith("worker.")) {
      what.append(el("code", data.worker_id));
    } else if (event.type.startsWith("schedule.")) {
      li.querySelector(".badge").textContent = `schedule ${kind}`;
      what.append(el("b", data.schedule), el("span", data.queue || "default", "queue"));
      if (data.task_id) {
        what.append(el("code", data.task_id.slice(0, 8)));
        what.querySelector("code").title = data.task_id;
      }
    } else if (event.type.startsWith("workflow.")) {
      what.append(el("b", "workflow"), el("span", data.queue || "default", "queue"),
                  el("code", (data.workflow_id || "").slice(0, 8)));
      what.querySelector("code").title = data.workflow_id;
    } else {
      what.append(el("span", "task events thinned: over the per-second limit"));
    }
    li.querySelector(".detail").textContent = eventDetail(event.type, data);
    li.querySelector(".detail").title = li.querySelector(".detail").textContent;
    return li;
  }

  function el(tag, text, className) {
    const node = document.createElement(tag);
    node.textContent = text === undefined || text === null ? "" : String(text);
    if (className) node.className = className;
    return node;
  }

  function eventDetail(type, d) {
    switch (type) {
      case "task.submitted": return d.scheduled_at ? `scheduled for ${new Date(d.scheduled_at).toLocaleTimeString("en-GB")}` : "";
      case "task.started": return `attempt ${d.attempt}` + (d.queue_wait !== undefined ? ` \u00b7 waited ${duration(d.queue_wait)}` : "");
      case "task.completed": return duration(d.duration);
      case "task.failed": return `attempt ${d.attempt}: ${d.error}`;
      case "task.retrying": return d.next_retry_at ? `retry at ${new Date(d.next_retry_at).toLocaleTimeString("en-GB")}` : "";
      case "task.dead_lettered": return d.reason || d.error || "";
      case "worker.joined": return [d.hostname, d.concurrency ? `${d.concurrency} slots` : ""].filter(Boolean).join(" \u00b7 ");
      case "worker.left": return d.reason || "";
      case "workflow.failed": return d.failed_step ? `failed step ${d.failed_step.slice(0, 8)}` : "";
      case "schedule.fired": return `tick ${new Date(d.scheduled_for).toLocaleTimeString("en-GB")} \u00b7 lag ${duration(d.lag)}`;
      case "schedule.missed": return `${d.missed} tick(s) missed \u00b7 next ${new Date(d.next_run_at).toLocaleTimeString("en-GB")}`;
      case "schedule.error": return d.error || "";
      case "events.dropped": return `limit ${d.limit_per_second}/s, resuming in ${duration(d.resume_in)}`;
      default: return "";
    }
  }

  function duration(seconds) {
    if (seconds === undefined || seconds === null) return "";
    if (seconds < 1) return `${Math.round(seconds * 1000)} ms`;
    if (seconds < 60) return `${seconds.toFixed(seconds < 10 ? 2 : 1)} s`;
    return `${Math.floor(seconds / 60)} min ${Math.round(seconds % 60)} s`;
  }

  function renderStatus() {
    const pill = $("#conn");
    const socket = window.tqDashboard && window.tqDashboard.socket;
    const status = socket ? socket.status : "connecting";
    pill.dataset.state = status;
    let text = {live: "Live", connecting: "Connecting\u2026", "signed-out": "Signed out",
                unauthorized: "Not authorised"}[status];
    if (status === "reconnecting" || status === "unauthorized") {
      const wait = Math.max(0, Math.ceil((socket.retryAt - Date.now()) / 1000));
      text = `${status === "unauthorized" ? "Not authorised" : "Offline"} \u00b7 retrying in ${wait} s`;
    }
    setText("#conn-text", text);
    $("#signin-link").hidden = status !== "signed-out";
  }

  const render = {
    pending: false,
    soon() {
      if (this.pending) return;
      this.pending = true;
      requestAnimationFrame(() => { this.pending = false; renderAll(); });
    },
    now() { renderAll(); },
  };

  /* ------------------------------------------------------------- controls */

  function wireControls() {
    for (const chip of document.querySelectorAll("[data-feed-filter]")) {
      chip.addEventListener("click", () => {
        state.feedFilter = chip.dataset.feedFilter;
        for (const other of document.querySelectorAll("[data-feed-filter]")) {
          other.setAttribute("aria-pressed", String(other === chip));
        }
        $("#feed").replaceChildren();
        renderFeedFresh();
      });
    }
    const pause = $("#feed-pause");
    pause.addEventListener("click", () => {
      state.feedPaused = !state.feedPaused;
      pause.setAttribute("aria-pressed", String(state.feedPaused));
      pause.textContent = state.feedPaused ? "Resume" : "Pause";
      if (!state.feedPaused) renderFeedFresh();
    });
  }

  function renderFeedFresh() {
    $("#feed").replaceChildren();
    for (const event of state.feed) feedRendered.delete(event);
    renderFeed();
  }

  /* ---------------------------------------------------------------- start */

  applySnapshot(JSON.parse($("#tq-initial").textContent));
  wireControls();
  window.tqDashboard = {state, config};
  window.tqDashboard.socket = new LiveSocket(config.token);
  render.now();
  setInterval(() => { render.soon(); renderStatus(); }, 1000);
})();
