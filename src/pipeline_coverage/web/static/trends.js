// Trends on the dashboard: a principal's history on a real time axis (one point per
// day, the day's last run), the same point of this and the previous fiscal quarters,
// and "Export CSV" for the dashboard's tables.
//
// Loaded after dashboard.js, whose helpers it uses (api, $, state, whoText, STATUS_PILL,
// ratioOf, colorOf, formatValue, when, barTexts, referenceLine, INK, COLORS). `trend(row,
// request)` is called by dashboard.js when a bar or row is picked.
//
// Chart.js has no time scale without a date adapter: the x-axis is linear, in days
// since 1970-01-01 (UTC), with the ticks written as dates — real time, nothing more
// vendored.
"use strict";

const DAY_MS = 86400000;
const SAME_POINT_QUARTERS = 4;

/** "2026-03-16" -> days since 1970-01-01. */
function epochDay(isoDate) {
  const [year, month, day] = isoDate.split("-").map(Number);
  return Date.UTC(year, month - 1, day) / DAY_MS;
}

function isoDay(days) {
  return new Date(days * DAY_MS).toISOString().slice(0, 10);
}

/** "Mar 16" (and the year when it is not the period's). */
function dayLabel(days, withYear = false) {
  return new Date(days * DAY_MS).toLocaleDateString(undefined, {
    month: "short", day: "numeric", timeZone: "UTC", ...(withYear ? { year: "numeric" } : {}),
  });
}

/** The coverage of the remaining quota a chart shows for a point: null once the quota
 *  is met (or without a target); the seed's coverage for a run stored before it. */
function pointRatio(point) {
  return ratioOf(point);
}

function attainmentPercent(point) {
  return point.attainment_ratio === null || point.attainment_ratio === undefined
    ? null : Number(point.attainment_ratio) * 100;
}

function metricText(name, value) {
  const metric = state.metrics.get(name);
  return metric ? formatValue(metric, value) : String(value ?? "—");
}

/** A table's body from rows of cells; a cell is text, or {text, csv} when the CSV
 *  should carry the exact value rather than the formatted one. */
function fillTable(table, columns, lines) {
  const head = document.createElement("tr");
  for (const column of columns) {
    const th = document.createElement("th");
    th.scope = "col";
    th.textContent = column.label;
    if (column.num) th.className = "num";
    head.append(th);
  }
  table.querySelector("thead").replaceChildren(head);
  table.querySelector("tbody").replaceChildren(...lines.map((cells) => {
    const tr = document.createElement("tr");
    cells.forEach((cell, index) => {
      const td = document.createElement("td");
      const value = cell !== null && typeof cell === "object" ? cell : { text: cell };
      td.textContent = value.text ?? "—";
      if (value.csv !== undefined && value.csv !== null) td.dataset.csv = value.csv;
      if (columns[index].num) td.className = "num";
      tr.append(td);
    });
    return tr;
  }));
}

const POINT_COLUMNS = [
  { label: "Coverage of remaining", num: true, name: "remaining_coverage_ratio" },
  { label: "Attainment", num: true, name: "attainment_ratio" },
  { label: "Open", num: true, name: "open_amount" },
  { label: "Won", num: true, name: "won_amount" },
  { label: "Target", num: true, name: "target_amount" },
];

function pointCells(point) {
  if (!point) return POINT_COLUMNS.map(() => ({ text: "no run", csv: "" }));
  return POINT_COLUMNS.map((column) => {
    const value = point[column.name];
    const text = column.name === "remaining_coverage_ratio" && point.status === "quota_met"
      ? "quota met" : metricText(column.name, value);
    return { text, csv: value ?? "" };
  });
}

/** The runs a trend reads: the row's pipeline, and the shown run's target matching and
 *  roll-up, so a series never jumps between two ways of counting. */
function sameOptions(query, run, row) {
  if (row.pipeline_id) query.set("pipeline_id", row.pipeline_id);
  query.set("target_match", run.parameters.target_match || "exact");
  query.set("rollup", String(Boolean(run.parameters.rollup)));
}

// --- the trend: one point per day -------------------------------------------------------------

async function trend(row, request) {
  const run = state.result.run;
  const query = new URLSearchParams({
    principal_type: row.principal_type, principal_id: row.principal_id,
    period_start: run.period_start, period_end: run.period_end, granularity: "day",
  });
  sameOptions(query, run, row);
  try {
    const history = await api(`/v1/coverage/history?${query}`);
    if (request !== state.request) return;
    drawTrend(row, run, history.points);
    await samePoint(row, run, request);
  } catch (error) {
    $("dashboard-error").textContent = error.message;
  }
}

// One look per metric in both trend charts (and as in the coverage chart): coverage of
// the remaining quota in its band's colour (a bar, or a point on a blue-grey line),
// attainment as ink diamonds; a day of quota met as a green star at the healthy line.
const COVERAGE_LINE = "#5c7cfa";
const ATTAINMENT = { borderColor: INK, backgroundColor: INK, pointStyle: "rectRot", pointRadius: 6 };
const COVERAGE_LABEL = "Coverage of the remaining quota (x)";
const ATTAINMENT_LABEL = "Attainment (%)";
// Each metric's legend swatch, the same in both charts (a bar's would be its first
// bar's band, a line's its line's).
const SWATCH = { [COVERAGE_LABEL]: COVERAGE_LINE, [ATTAINMENT_LABEL]: INK, "Quota met": COLORS.quota_met };
const LEGEND = {
  display: true, position: "bottom",
  labels: {
    generateLabels: (chart) => Chart.defaults.plugins.legend.labels.generateLabels(chart).map((item) => {
      const color = SWATCH[chart.data.datasets[item.datasetIndex].label];
      return color ? { ...item, fillStyle: color, strokeStyle: color, lineDash: [] } : item;
    }),
  },
};

function drawTrend(row, run, points) {
  $("trend-card").hidden = false;
  const first = epochDay(run.period_start);
  const last = epochDay(run.period_end) - 1;
  // The chart is the period's days; a run as of a day outside it (taken before the
  // period began, or made after it ended) is in the Data table only.
  const inside = points.filter((point) => epochDay(point.as_of) >= first && epochDay(point.as_of) <= last);
  const outside = points.length - inside.length;
  const days = inside.length;
  $("trend-title").textContent = `Trend: ${whoText(row)} on ${days} day${days === 1 ? "" : "s"} of this period`
    + (outside ? ` (${outside} more as of days outside it: see Data)` : "");
  const xs = inside.map((point) => epochDay(point.as_of));
  const healthy = state.session.healthy;
  const data = {
    labels: inside.map((point) => point.as_of),
    datasets: [
      {
        // No line across a day without a ratio (quota met, no target): the line breaks.
        label: COVERAGE_LABEL, yAxisID: "y", tension: 0.2, spanGaps: false,
        data: inside.map((point, index) => ({ x: xs[index], y: pointRatio(point) })),
        borderColor: COVERAGE_LINE, backgroundColor: COVERAGE_LINE,
        pointBackgroundColor: inside.map(colorOf), pointBorderColor: inside.map(colorOf), pointRadius: 4,
      },
      {
        label: ATTAINMENT_LABEL, yAxisID: "attainment", tension: 0.2, spanGaps: true,
        data: inside.map((point, index) => ({ x: xs[index], y: attainmentPercent(point) })),
        borderDash: [4, 3], ...ATTAINMENT,
      },
      {
        label: "Quota met", yAxisID: "y", showLine: false,
        data: inside.flatMap((point, index) => (point.status === "quota_met" ? [{ x: xs[index], y: healthy }] : [])),
        pointStyle: "star", pointRadius: 9, borderWidth: 2,
        borderColor: COLORS.quota_met, backgroundColor: COLORS.quota_met,
      },
    ],
  };
  for (const dataset of data.datasets) dataset.clip = 12; // a point on the period's first or last day, whole
  if (window.trendChart) window.trendChart.destroy();
  window.trendChart = new Chart($("trend-chart"), {
    type: "line", data,
    plugins: [referenceLine(state.session.healthy)],
    options: {
      maintainAspectRatio: false, animation: false,
      plugins: {
        legend: LEGEND,
        tooltip: { callbacks: { title: (items) => (items.length ? dayLabel(items[0].parsed.x, true) : "") } },
      },
      scales: {
        // The whole period, and any day before it that a run speaks for.
        x: {
          type: "linear", min: first, max: last,
          ticks: { stepSize: 7, callback: (value) => dayLabel(value) },
          title: { display: true, text: "as-of day (each day's last run)" },
        },
        y: { beginAtZero: true, suggestedMax: healthy * 1.25, title: { display: true, text: "x" } },
        attainment: {
          position: "right", beginAtZero: true, suggestedMax: 100, grid: { drawOnChartArea: false },
          ticks: { callback: (value) => `${value}%` },
        },
      },
    },
  });
  fillTable($("trend-table"), [
    { label: "Day (as of)" }, { label: "Generated" }, ...POINT_COLUMNS,
  ], points.map((point) => [
    { text: point.as_of, csv: point.as_of }, { text: when(point.generated_at), csv: point.generated_at },
    ...pointCells(point),
  ]));
}

// --- the same point of the quarter ------------------------------------------------------------

/** The run's as-of day inside its period: a run taken before its period began reads as
 *  day 1, one taken after it as its last day. */
function referenceDay(run) {
  const day = epochDay(run.parameters.as_of || run.generated_at.slice(0, 10));
  return isoDay(Math.min(Math.max(day, epochDay(run.period_start)), epochDay(run.period_end) - 1));
}

async function samePoint(row, run, request) {
  const query = new URLSearchParams({
    principal_type: row.principal_type, principal_id: row.principal_id,
    quarters: String(SAME_POINT_QUARTERS), as_of: referenceDay(run),
  });
  sameOptions(query, run, row);
  const found = await api(`/v1/coverage/same-point?${query}`);
  if (request !== state.request) return;
  drawSamePoint(row, found);
}

function drawSamePoint(row, found) {
  const quarters = found.quarters;
  $("same-point-title").textContent =
    `Same point of the quarter: day ${found.day_of_quarter} of the last ${quarters.length} quarters`;
  $("same-point-note").textContent =
    `${whoText(row)} as of day ${found.day_of_quarter} of each fiscal quarter: the last run of the quarter`
    + " on or before that day.";
  const labels = quarters.map((q) => `${q.period} · ${dayLabel(epochDay(q.day))}${q.point ? "" : " (no run)"}`);
  const points = quarters.map((q) => q.point);
  const texts = points.map((point) => {
    if (!point || point.status === "no_target") return "";
    if (point.status === "quota_met") return STATUS_PILL.quota_met[0];
    return metricText("remaining_coverage_ratio", point.remaining_coverage_ratio ?? point.coverage_ratio);
  });
  const data = {
    labels,
    datasets: [
      {
        label: COVERAGE_LABEL, yAxisID: "y", type: "bar", order: 3,
        // Quota met: a full bar at the healthy line, as in the coverage chart.
        data: points.map((point) => {
          if (!point) return null;
          return point.status === "quota_met" ? state.session.healthy : pointRatio(point);
        }),
        maxBarThickness: 90,
        backgroundColor: points.map((point) => (point ? colorOf(point) : COLORS.no_target)),
      },
      {
        label: ATTAINMENT_LABEL, yAxisID: "attainment", type: "line", showLine: false, order: 1,
        data: points.map((point) => (point ? attainmentPercent(point) : null)),
        ...ATTAINMENT,
      },
    ],
  };
  if (window.samePointChart) window.samePointChart.destroy();
  window.samePointChart = new Chart($("same-point-chart"), {
    type: "bar", data,
    plugins: [barTexts(texts), referenceLine(state.session.healthy)],
    options: {
      maintainAspectRatio: false, animation: false,
      layout: { padding: { top: 16 } },
      plugins: { legend: LEGEND },
      scales: {
        y: { beginAtZero: true, suggestedMax: state.session.healthy * 1.25, title: { display: true, text: "x" } },
        attainment: {
          position: "right", beginAtZero: true, suggestedMax: 100, grid: { drawOnChartArea: false },
          ticks: { callback: (value) => `${value}%` },
        },
      },
    },
  });
  fillTable($("same-point-table"), [
    { label: "Quarter" }, { label: "Day" }, { label: "Run as of" }, ...POINT_COLUMNS,
  ], quarters.map((q) => [
    q.period, q.day, q.point ? q.point.as_of : { text: "no run", csv: "" }, ...pointCells(q.point),
  ]));
}

// --- export as CSV ----------------------------------------------------------------------------

/** A cell as a spreadsheet should get it: a name that would run as a formula gets a
 *  leading apostrophe (as the server's CSV does); numbers stay numbers. */
function csvCell(text) {
  const safe = /^[=+\-@\t\r]/.test(text) && !/^-?[\d,]*\.?\d+$/.test(text) ? `'${text}` : text;
  return /[",\n\r]/.test(safe) ? `"${safe.replaceAll('"', '""')}"` : safe;
}

/** A table as shown: its header and rows; a cell's exact value (data-csv, or the
 *  deals' data-cents) when it has one, else its text (a number column's without
 *  thousands separators). */
function tableCsv(table) {
  const lines = [];
  for (const tr of table.querySelectorAll("thead tr, tbody tr")) {
    lines.push([...tr.children].map((cell) => {
      if (cell.dataset.csv !== undefined) return csvCell(cell.dataset.csv);
      if (cell.dataset.cents) return csvCell(centsText(cell.dataset.cents));
      const text = cell.textContent.trim();
      const number = cell.classList.contains("num") && /^[+-]?[\d,]+(\.\d+)?$/.test(text);
      return csvCell(number ? text.replaceAll(",", "") : text);
    }).join(","));
  }
  return lines.join("\n") + "\n";
}

function centsText(text) {
  const value = BigInt(text);
  const digits = (value < 0n ? -value : value).toString().padStart(3, "0");
  return `${value < 0n ? "-" : ""}${digits.slice(0, -2)}.${digits.slice(-2)}`;
}

function download(name, blob) {
  const link = document.createElement("a");
  link.href = URL.createObjectURL(blob);
  link.download = name;
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(link.href), 0);
}

function fileStem() {
  const run = state.result ? state.result.run : null;
  return run ? `${run.period_start}-${run.run_id.slice(0, 8)}` : "export";
}

/** The coverage table exports its run as the API's CSV: every row and metric, exact. */
async function exportRun() {
  const run = state.result.run;
  const response = await fetch(`/v1/coverage-runs/${run.run_id}`, {
    credentials: "same-origin", headers: { Accept: "text/csv" },
  });
  if (!response.ok) throw new Error(`${response.status} ${response.statusText}`);
  download(`coverage-${fileStem()}.csv`, await response.blob());
}

function exportButton(name, action) {
  const button = document.createElement("button");
  button.type = "button";
  button.className = "secondary small export-csv";
  button.textContent = "Export CSV";
  button.dataset.export = name;
  button.addEventListener("click", async () => {
    try {
      await action();
    } catch (error) {
      $("dashboard-error").textContent = `Could not export: ${error.message}`;
    }
  });
  return button;
}

function exportTable(id, name) {
  return () => download(`${name}-${fileStem()}.csv`, new Blob([tableCsv($(id))], { type: "text/csv" }));
}

document.addEventListener("DOMContentLoaded", () => {
  const coverageHead = $("coverage-table").closest(".card").querySelector(".table-head");
  coverageHead.append(exportButton("coverage", exportRun));
  const dealsHead = $("deals-card").querySelector(".table-head");
  dealsHead.insertBefore(exportButton("deals", exportTable("deals-table", "deals")), $("close-deals"));
  $("trend-export").replaceWith(exportButton("trend", exportTable("trend-table", "trend")));
  $("same-point-export").replaceWith(exportButton("same-point", exportTable("same-point-table", "same-point")));
});
