// The dashboard: signs in with an API key (kept by the server in a signed, HttpOnly
// cookie), then reads and creates runs through the same /v1 API as any client.
"use strict";

const COLORS = { short: "#d64545", watch: "#e0a100", healthy: "#2f9e44", none: "#adb5bd" };
const state = { session: null, run: null, rows: [], sort: { key: "coverage_ratio", dir: -1 } };
const $ = (id) => document.getElementById(id);
const money = new Intl.NumberFormat(undefined, { minimumFractionDigits: 2, maximumFractionDigits: 2 });

class ApiError extends Error {}

async function api(path, options = {}) {
  const headers = { Accept: "application/json" };
  if (options.body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(path, {
    credentials: "same-origin",
    ...options,
    headers,
    body: options.body === undefined ? undefined : JSON.stringify(options.body),
  });
  if (response.status === 401 && path !== "/session") {
    showLogin();
  }
  if (!response.ok) {
    const problem = await response.json().catch(() => ({}));
    throw new ApiError(problem.detail || `${response.status} ${response.statusText}`);
  }
  return response.status === 204 ? null : response.json();
}

function showLogin(message = "") {
  $("dashboard").hidden = true;
  $("who").hidden = true;
  $("login").hidden = false;
  $("login-error").textContent = message;
}

async function start() {
  try {
    state.session = await api("/session");
  } catch (error) {
    showLogin();
    return;
  }
  $("login").hidden = true;
  $("who").hidden = false;
  $("dashboard").hidden = false;
  $("tenant-name").textContent = state.session.tenant_name;
  for (const el of document.querySelectorAll(".band-low")) el.textContent = state.session.low;
  for (const el of document.querySelectorAll(".band-healthy")) el.textContent = state.session.healthy;
  $("period-start").value = state.session.period_start;
  $("period-end").value = state.session.period_end;
  await loadLatest();
}

function period() {
  return { period_start: $("period-start").value, period_end: $("period-end").value };
}

function shiftQuarter(step) {
  const [year, month] = $("period-start").value.split("-").map(Number);
  const first = new Date(Date.UTC(year, month - 1 + 3 * step, 1));
  const next = new Date(Date.UTC(first.getUTCFullYear(), first.getUTCMonth() + 3, 1));
  $("period-start").value = first.toISOString().slice(0, 10);
  $("period-end").value = next.toISOString().slice(0, 10);
  loadLatest();
}

async function loadLatest() {
  $("dashboard-error").textContent = "";
  const { period_start, period_end } = period();
  const query = new URLSearchParams({ period_start, period_end, mode: "batch", limit: "1" });
  try {
    const page = await api(`/v1/coverage-runs?${query}`);
    if (page.items.length === 0) {
      show(null);
      return;
    }
    show(await api(`/v1/coverage-runs/${page.items[0].run_id}`));
  } catch (error) {
    $("dashboard-error").textContent = error.message;
  }
}

async function runNow() {
  const button = $("run-now");
  button.disabled = true;
  $("dashboard-error").textContent = "";
  try {
    show(await api("/v1/coverage-runs", { method: "POST", body: period() }));
  } catch (error) {
    $("dashboard-error").textContent = error.message;
  } finally {
    button.disabled = false;
  }
}

function band(ratio) {
  if (ratio === null) return "none";
  if (ratio < state.session.low) return "short";
  return ratio < state.session.healthy ? "watch" : "healthy";
}

function ratioOf(row) {
  return row.coverage_ratio === null ? null : Number(row.coverage_ratio);
}

function label(row) {
  const name = row.principal_name || row.principal_id.slice(0, 8);
  return row.principal_type === "GROUP" ? `${name} (team)` : name;
}

function show(result) {
  state.run = result ? result.run : null;
  state.rows = result ? result.rows : [];
  const status = $("run-status");
  if (!result) {
    status.textContent = "No run for this period yet: press “Run now”.";
    status.dataset.runId = "";
  } else {
    const when = new Date(result.run.generated_at).toLocaleString();
    status.textContent = `Run ${result.run.run_id} · generated ${when} · ${result.rows.length} reps and teams`;
    status.dataset.runId = result.run.run_id;
  }
  drawChart();
  drawTable();
}

function drawChart() {
  const rows = [...state.rows].sort((a, b) => (ratioOf(b) ?? -1) - (ratioOf(a) ?? -1));
  const labels = rows.map(label);
  const ratios = rows.map((row) => ratioOf(row) ?? 0);
  const colors = rows.map((row) => COLORS[band(ratioOf(row))]);
  const healthy = state.session.healthy;
  const data = {
    labels,
    datasets: [
      { type: "bar", label: "Coverage", data: ratios, backgroundColor: colors, order: 2 },
      {
        type: "line", label: `${healthy}× reference`, data: labels.map(() => healthy),
        borderColor: "#1f2a44", borderDash: [6, 4], borderWidth: 2, pointRadius: 0, order: 1,
      },
    ],
  };
  if (window.coverageChart) {
    window.coverageChart.data = data;
    window.coverageChart.update();
    return;
  }
  window.coverageChart = new Chart($("coverage-chart"), {
    data,
    options: {
      maintainAspectRatio: false,
      animation: false,
      plugins: {
        legend: { display: false },
        tooltip: {
          callbacks: {
            label: (item) => {
              if (item.datasetIndex === 1) return item.dataset.label;
              const row = rows[item.dataIndex];
              return row.coverage_ratio === null
                ? `no target · open ${money.format(Number(row.open_amount))}`
                : `${Number(row.coverage_ratio).toFixed(2)}× · open ${money.format(Number(row.open_amount))} / target ${money.format(Number(row.target_amount))}`;
            },
          },
        },
      },
      scales: { y: { beginAtZero: true, title: { display: true, text: "coverage (×)" } } },
      onClick: (_event, elements) => {
        if (elements.length) trend(rows[elements[0].index]);
      },
    },
  });
}

function sortValue(row, key) {
  const value = row[key];
  if (["target_amount", "open_amount", "coverage_ratio"].includes(key)) {
    return value === null ? -Infinity : Number(value);
  }
  return (value || "").toString().toLowerCase();
}

function drawTable() {
  const { key, dir } = state.sort;
  const rows = [...state.rows].sort((a, b) => {
    const x = sortValue(a, key);
    const y = sortValue(b, key);
    return x < y ? -dir : x > y ? dir : 0;
  });
  for (const th of document.querySelectorAll("#coverage-table th")) {
    th.classList.toggle("sorted-asc", th.dataset.key === key && dir === 1);
    th.classList.toggle("sorted-desc", th.dataset.key === key && dir === -1);
  }
  const body = $("coverage-table").querySelector("tbody");
  body.replaceChildren(...rows.map((row) => {
    const tr = document.createElement("tr");
    const ratio = ratioOf(row);
    const cells = [
      row.principal_type,
      label(row),
      row.target_amount === null ? "—" : money.format(Number(row.target_amount)),
      money.format(Number(row.open_amount)),
      null,
    ];
    cells.forEach((text, index) => {
      const td = document.createElement("td");
      if (index >= 2) td.className = "num";
      if (text === null) {
        const pill = document.createElement("span");
        pill.className = "pill";
        pill.style.background = COLORS[band(ratio)];
        pill.textContent = ratio === null ? "no target" : `${ratio.toFixed(2)}×`;
        td.append(pill);
      } else {
        td.textContent = text;
      }
      tr.append(td);
    });
    tr.addEventListener("click", () => trend(row));
    return tr;
  }));
}

async function trend(row) {
  const query = new URLSearchParams({
    principal_type: row.principal_type, principal_id: row.principal_id, ...period(),
  });
  try {
    const history = await api(`/v1/coverage/history?${query}`);
    $("trend-card").hidden = false;
    $("trend-title").textContent = `Trend: ${label(row)}`;
    const points = history.points;
    const data = {
      labels: points.map((p) => new Date(p.generated_at).toLocaleString()),
      datasets: [{
        label: "Coverage (×)", data: points.map((p) => (p.coverage_ratio === null ? null : Number(p.coverage_ratio))),
        borderColor: "#1f2a44", backgroundColor: "#1f2a44", tension: 0.2,
      }],
    };
    if (window.trendChart) window.trendChart.destroy();
    window.trendChart = new Chart($("trend-chart"), {
      type: "line", data,
      options: { maintainAspectRatio: false, animation: false, plugins: { legend: { display: false } },
                 scales: { y: { beginAtZero: true } } },
    });
  } catch (error) {
    $("dashboard-error").textContent = error.message;
  }
}

document.addEventListener("DOMContentLoaded", () => {
  $("login-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    try {
      await api("/session", { method: "POST", body: { api_key: $("api-key").value.trim() } });
      $("api-key").value = "";
      await start();
    } catch (error) {
      showLogin(error.message);
    }
  });
  $("sign-out").addEventListener("click", async () => {
    await api("/session", { method: "DELETE" });
    showLogin();
  });
  $("period-form").addEventListener("submit", (event) => { event.preventDefault(); loadLatest(); });
  $("previous-quarter").addEventListener("click", () => shiftQuarter(-1));
  $("next-quarter").addEventListener("click", () => shiftQuarter(1));
  $("run-now").addEventListener("click", runNow);
  for (const th of document.querySelectorAll("#coverage-table th")) {
    th.addEventListener("click", () => {
      const same = state.sort.key === th.dataset.key;
      state.sort = { key: th.dataset.key, dir: same ? -state.sort.dir : 1 };
      drawTable();
    });
  }
  start();
});
