// The unit board: open work by owner and role, overdue and escalated first, workload and the
// operational metrics, kept current by the server's stream of task changes. Everything shown is
// read from the REST API with the signed-in token; nothing is stored beyond this browser tab.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const TOKEN_KEY = "baton.token";
  const WEEK = 7 * 24 * 60 * 60 * 1000;
  const MAX_TASKS = 1000;
  let token = null;
  let unit = null;
  let stream = null;
  let reloadTimer = null;
  let retry = 1000;
  const charts = {};

  /** The token: from the URL fragment (then removed from the address bar), or this tab's. */
  function takeToken() {
    const fragment = new URLSearchParams(location.hash.slice(1));
    const given = fragment.get("token");
    if (given) {
      sessionStorage.setItem(TOKEN_KEY, given);
      history.replaceState(null, "", location.pathname + location.search);
    }
    return sessionStorage.getItem(TOKEN_KEY);
  }

  async function api(path) {
    const response = await fetch(path, {
      headers: { Authorization: `Bearer ${token}` },
      cache: "no-store",
    });
    const body = await response.json().catch(() => ({}));
    if (!response.ok) {
      const error = new Error(body.message || `the server answered ${response.status}`);
      error.status = response.status;
      throw error;
    }
    return body;
  }

  function showSignIn(message) {
    $("board").hidden = true;
    $("sign-in").hidden = false;
    $("sign-out").hidden = true;
    $("unit").disabled = true;
    $("sign-in-error").textContent = message || "";
    setLive("Not signed in", false);
    $("token").focus();
  }

  function setLive(text, on) {
    const live = $("live");
    live.textContent = text;
    live.classList.toggle("on", on);
    live.classList.toggle("off", !on);
  }

  async function start() {
    token = takeToken();
    if (!token) {
      showSignIn();
      return;
    }
    let me;
    try {
      me = await api("/api/v1/me");
    } catch (error) {
      sessionStorage.removeItem(TOKEN_KEY);
      token = null;
      showSignIn(`That token was refused: ${error.message}`);
      return;
    }
    const units = new Set([...me.units.map((u) => u.id), ...me.admin_units]);
    if (me.server_admin) {
      const page = await api("/api/v1/tasks?limit=200");
      page.tasks.forEach((t) => units.add(t.unit));
    }
    const select = $("unit");
    select.replaceChildren(
      ...[...units].sort().map((id) => new Option(id, id)),
    );
    if (units.size === 0) {
      showSignIn(`${me.display_name} holds no role on any unit.`);
      return;
    }
    const asked = new URLSearchParams(location.search).get("unit");
    select.value = units.has(asked) ? asked : select.options[0].value;
    select.disabled = false;
    $("sign-in").hidden = true;
    $("board").hidden = false;
    $("sign-out").hidden = false;
    await follow(select.value);
  }

  async function follow(next) {
    unit = next;
    if (stream) stream.abort();
    stream = null;
    await reload();
    listen();
  }

  /** Every open task of the unit (open and waiting), a page at a time. */
  async function openTasks(of) {
    const tasks = [];
    for (const status of ["open", "waiting"]) {
      let cursor = null;
      do {
        const query = new URLSearchParams({ unit: of, status, limit: "200" });
        if (cursor) query.set("cursor", cursor);
        const page = await api(`/api/v1/tasks?${query}`);
        tasks.push(...page.tasks);
        cursor = page.next_cursor;
      } while (cursor && tasks.length < MAX_TASKS);
    }
    return tasks;
  }

  async function reload() {
    const of = unit;
    try {
      const me = await api("/api/v1/me");
      const since = me.server_time - WEEK;
      const [tasks, summary] = await Promise.all([
        openTasks(of),
        api(`/api/v1/metrics/summary?${new URLSearchParams({ unit: of, since: String(since) })}`),
      ]);
      if (of !== unit) return;
      renderTasks(tasks, me.server_time);
      renderWorkload(summary.workload);
      renderMeasures(summary);
    } catch (error) {
      if (error.status === 401 || error.status === 403) {
        sessionStorage.removeItem(TOKEN_KEY);
        showSignIn(`Signed out: ${error.message}`);
      } else {
        setLive(`Could not refresh: ${error.message}`, false);
      }
    }
  }

  function scheduleReload() {
    clearTimeout(reloadTimer);
    reloadTimer = setTimeout(reload, 250);
  }

  /** Follow the unit's task changes; reconnect with backoff when the stream ends. */
  async function listen() {
    const controller = new AbortController();
    stream = controller;
    try {
      const response = await fetch(
        `/api/v1/board/events?${new URLSearchParams({ unit })}`,
        { headers: { Authorization: `Bearer ${token}` }, signal: controller.signal },
      );
      if (!response.ok) throw new Error(`the server answered ${response.status}`);
      setLive(`Live · ${unit}`, true);
      retry = 1000;
      // A change may have landed between the last read and the stream opening.
      scheduleReload();
      const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += value;
        let end;
        while ((end = buffer.indexOf("\n\n")) >= 0) {
          const block = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          if (/^event: (task|resync)$/m.test(block)) scheduleReload();
        }
      }
    } catch (error) {
      if (controller.signal.aborted) return;
    }
    if (stream !== controller) return;
    setLive("Reconnecting…", false);
    setTimeout(() => {
      if (stream === controller) listen();
    }, retry);
    retry = Math.min(retry * 2, 30000);
  }

  function minutes(ms) {
    if (ms === null || ms === undefined) return "—";
    const total = Math.round(ms / 60000);
    if (total < 60) return `${total} min`;
    return `${Math.floor(total / 60)} h ${String(total % 60).padStart(2, "0")} min`;
  }

  function percent(rate) {
    return rate === null || rate === undefined ? "—" : `${Math.round(rate * 100)} %`;
  }

  function cell(text, className) {
    const td = document.createElement("td");
    td.textContent = text;
    if (className) td.className = className;
    return td;
  }

  function renderTasks(tasks, now) {
    tasks.sort((a, b) =>
      (b.overdue - a.overdue) ||
      (b.escalation_level - a.escalation_level) ||
      ((a.next_due_at ?? Infinity) - (b.next_due_at ?? Infinity)) ||
      a.id.localeCompare(b.id));
    const rows = tasks.map((task) => {
      const row = document.createElement("tr");
      row.dataset.taskId = task.id;
      row.dataset.escalationLevel = String(task.escalation_level);
      row.dataset.overdue = String(task.overdue);
      row.classList.toggle("overdue", task.overdue);
      row.classList.toggle("escalated", task.escalation_level > 0);
      row.append(
        cell(task.label),
        cell(task.template),
        cell(task.owner ?? "Unassigned"),
        cell(task.owner_role),
        cell(task.status),
      );
      const escalation = cell("", "escalation");
      if (task.escalation_level > 0) {
        const flag = document.createElement("span");
        flag.className = "flag";
        flag.textContent = "ESCALATED";
        escalation.append(flag, `level ${task.escalation_level}`);
      } else {
        escalation.textContent = "—";
      }
      let due = "—";
      if (task.next_due_at !== null) {
        const at = new Date(task.next_due_at).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
        const left = task.next_due_at - now;
        due = task.overdue ? `OVERDUE by ${minutes(-left)} (${at})` : `${at} (in ${minutes(left)})`;
      }
      row.append(escalation, cell(due, "due"));
      return row;
    });
    $("tasks").tBodies[0].replaceChildren(...rows);
    $("empty").hidden = tasks.length > 0;
    $("count").textContent = `(${tasks.length})`;
  }

  function figureRows(tbody, rows) {
    tbody.replaceChildren(...rows.map((values) => {
      const tr = document.createElement("tr");
      tr.append(...values.map((v) => cell(String(v))));
      return tr;
    }));
  }

  /** A bar chart on `canvas`, drawn again with new labels and series. */
  function bars(id, labels, series) {
    const data = {
      labels,
      datasets: series.map((s, i) => ({
        label: s.label,
        data: s.data,
        backgroundColor: i === 0 ? "#000000" : "#8c8c8c",
        borderColor: "#000000",
        borderWidth: 1,
      })),
    };
    if (charts[id]) {
      charts[id].data = data;
      charts[id].update("none");
      return;
    }
    charts[id] = new Chart($(id), {
      type: "bar",
      data,
      options: {
        animation: false,
        responsive: true,
        maintainAspectRatio: false,
        plugins: { legend: { labels: { color: "#000", font: { size: 14 } } } },
        scales: {
          x: { ticks: { color: "#000", font: { size: 14 } }, grid: { color: "#ccc" } },
          y: { beginAtZero: true, ticks: { color: "#000", precision: 0 }, grid: { color: "#ccc" } },
        },
      },
    });
  }

  function renderWorkload(workload) {
    figureRows($("by-person").tBodies[0], workload.by_person.length
      ? workload.by_person.map((p) => [p.user, p.open])
      : [["Nobody owns open work yet", "—"]]);
    figureRows($("by-role").tBodies[0], workload.by_role.map((r) => [r.role, r.open, r.unowned]));
    bars("person-chart", workload.by_person.map((p) => p.user),
      [{ label: "Open tasks", data: workload.by_person.map((p) => p.open) }]);
    bars("role-chart", workload.by_role.map((r) => r.role), [
      { label: "Open", data: workload.by_role.map((r) => r.open) },
      { label: "Unowned", data: workload.by_role.map((r) => r.unowned) },
    ]);
  }

  function renderMeasures(summary) {
    const ack = summary.time_to_acknowledgment;
    const outreach = summary.time_to_first_outreach;
    const discharge = summary.discharge_order_to_confirmed;
    const e = summary.escalations;
    const tiles = [
      ["Tasks opened", String(summary.tasks)],
      ["Time to acknowledgment, median", minutes(ack.p50_ms)],
      ["Time to acknowledgment, 90th percentile", minutes(ack.p90_ms)],
      ["Not yet acknowledged", String(ack.not_reached)],
      ["Time to first outreach, median", minutes(outreach.p50_ms)],
      ["Windows missed (breach rate)", percent(summary.breach_rate.rate)],
      ["Escalations", `${e.time + e.acuity + e.manual} (${e.time} time, ${e.acuity} acuity, ${e.manual} manual)`],
      ["Completed without intervention", percent(summary.completed_without_intervention.rate)],
      ["Discharge order to confirmed, median", minutes(discharge.p50_ms)],
    ];
    $("tiles").replaceChildren(...tiles.map(([label, value]) => {
      const div = document.createElement("div");
      const dt = document.createElement("dt");
      const dd = document.createElement("dd");
      dt.textContent = label;
      dd.textContent = value;
      div.append(dt, dd);
      return div;
    }));
    bars("escalation-chart", ["Time", "Acuity", "Manual"],
      [{ label: "Escalations", data: [e.time, e.acuity, e.manual] }]);
    const mins = (ms) => (ms === null ? 0 : Math.round(ms / 60000));
    bars("time-chart", ["Acknowledgment", "First outreach", "Discharge"], [
      { label: "Median", data: [mins(ack.p50_ms), mins(outreach.p50_ms), mins(discharge.p50_ms)] },
      { label: "90th percentile", data: [mins(ack.p90_ms), mins(outreach.p90_ms), mins(discharge.p90_ms)] },
    ]);
  }

  $("sign-in-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const given = $("token").value.trim();
    if (!given) return;
    sessionStorage.setItem(TOKEN_KEY, given);
    $("token").value = "";
    start();
  });
  $("sign-out").addEventListener("click", () => {
    sessionStorage.removeItem(TOKEN_KEY);
    token = null;
    if (stream) stream.abort();
    stream = null;
    showSignIn();
  });
  $("unit").addEventListener("change", (event) => follow(event.target.value));
  start();
})();
