// The dashboard: signs in with an API key (kept by the server in a signed, HttpOnly
// cookie), then reads and creates runs through the same /v1 API as any client.
//
// Columns come from the metric registry the session lists (GET /session: `metrics`,
// `headline`), so a new metric shows here without touching this file. What a row is —
// its status, band, place in the default order, labels and flag notes — is what the
// server decided (the same as the CLI's table): this file renders it, never decides it. Amounts arrive
// as decimal strings; they are formatted and summed as integers (BigInt), never as
// floats, so a total of deals equals its row to the cent. Floats are only used to
// draw bars.
"use strict";

// A band's colour, and a status's that has no ratio (quota met, no target).
const COLORS = { short: "#d64545", watch: "#e0a100", healthy: "#2f9e44", quota_met: "#2f9e44", no_target: "#adb5bd" };
// A status without a ratio: its words and its pill's class.
const STATUS_PILL = { quota_met: ["quota met", "met"], no_target: ["no target", "none"] };
// The metric a row's status judges it by (the server's band is that metric's).
const JUDGED = { coverage: "remaining_coverage_ratio", legacy: "coverage_ratio" };
const INK = "#1f2a44";
const CLASS_ORDER = ["OPEN", "WON", "LOST", "UNDATED"];
// Which metric of a row each drill-down class adds up to.
const CLASS_METRIC = { OPEN: "open_amount", WON: "won_amount", LOST: "lost_amount", UNDATED: "undated_amount" };
const CLASS_LABEL = { OPEN: "Open", WON: "Won", LOST: "Lost", UNDATED: "Undated" };
const DEALS_PAGE = 1000;
const DEALS_SHOWN = 500;
// The columns picked: a preference of the browser (metric names, the same for every
// tenant), kept across sessions.
const COLUMNS_KEY = "pipeline-coverage.columns";
// What the sign-in form says after a session ended (read once, then removed).
const LOGIN_MESSAGE_KEY = "pipeline-coverage.login-message";
const SESSION_CHANGED_KEY = "pipeline-coverage.session-changed";
const state = {
  session: null,
  metrics: new Map(), // name -> {name, kind, label, description, unit}
  columns: [], // the metric names shown in the table, in order
  runs: [],
  periods: [], // GET /v1/periods: what the period picker lists
  result: null, // {run, exclusions, rows} of the run on screen
  view: "USER",
  sort: null, // {key, dir}; null: the default order (the rows' `order`)
  selected: null, // the row whose deals and trend are shown
  request: 0, // the newest drill-down request; older answers are dropped
};
// Whether this page has shown a session. Such a page never shows another one: ending
// the session loads the page afresh (see endSession).
let sessionShown = false;
let leaving = false; // the page is being loaded afresh
const $ = (id) => document.getElementById(id);

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
    endSession("Your session has ended: sign in again.");
  }
  if (!response.ok) {
    const problem = await response.json().catch(() => ({}));
    throw new ApiError(problem.detail || `${response.status} ${response.statusText}`);
  }
  return response.status === 204 ? null : response.json();
}

// --- exact decimals -----------------------------------------------------------------

const DECIMAL = /^([+-]?)(\d+)(?:\.(\d+))?$/;

/** A decimal string as a BigInt with `places` decimals, rounded half away from zero
 *  ("1234.567", 2 -> 123457n). */
function scaled(text, places) {
  const match = DECIMAL.exec(String(text).trim());
  if (!match) throw new Error(`not a decimal: ${text}`);
  const [, sign, whole, fraction = ""] = match;
  const digits = (fraction + "0".repeat(places + 1)).slice(0, places + 1);
  const tenfold = BigInt(whole) * 10n ** BigInt(places + 1) + BigInt(digits);
  const magnitude = (tenfold + 5n) / 10n;
  return sign === "-" ? -magnitude : magnitude;
}

const cents = (text) => scaled(text, 2);

function grouped(digits) {
  return digits.replace(/\B(?=(\d{3})+(?!\d))/g, ",");
}

/** A scaled BigInt as text with thousands separators: (123457n, 2) -> "1,234.57". */
function formatScaled(value, places) {
  const negative = value < 0n;
  const text = (negative ? -value : value).toString().padStart(places + 1, "0");
  const whole = grouped(text.slice(0, text.length - places));
  const fraction = places ? "." + text.slice(text.length - places) : "";
  return (negative ? "-" : "") + whole + fraction;
}

/** a / b rounded half away from zero, for b > 0. */
function divided(a, b) {
  const negative = a < 0n;
  const magnitude = ((negative ? -a : a) * 2n + b) / (2n * b);
  return negative ? -magnitude : magnitude;
}

const formatMoney = (text) => formatScaled(cents(text), 2);

/** A metric's value as people read it: money 1,234.50, ratios 2.35x or 112.0%, counts 1,234. */
function formatValue(metric, value) {
  if (value === null || value === undefined) return "—";
  if (metric.kind === "count") return grouped(String(value));
  if (metric.kind === "money") return formatMoney(value);
  if (metric.unit === "%") return formatScaled(scaled(value, 3), 1) + "%";
  if (metric.unit === "x") return formatScaled(scaled(value, 2), 2) + "x";
  return formatScaled(scaled(value, 4), 4);
}

const isZero = (text) => text !== null && text !== undefined && cents(text) === 0n;

// --- rows -----------------------------------------------------------------------------

function currency() {
  return (state.result && state.result.run.parameters.currency) || "";
}

function byPipeline() {
  return Boolean(state.result && state.result.run.parameters.by_pipeline);
}

// A run's rows carry their labels; a movement row (movement.js) is labelled like them.
function principalName(row) {
  return row.principal_label ?? (row.principal_name || row.principal_id.slice(0, 8));
}

function pipelineName(row) {
  return row.pipeline_label ?? (row.pipeline_name || (row.pipeline_id ? row.pipeline_id.slice(0, 8) : ""));
}

/** "Ann", or "Ann · Renewals" for a row of a by-pipeline run. */
function rowLabel(row) {
  if (row.label !== undefined) return row.label;
  return byPipeline() && row.pipeline_id ? `${principalName(row)} · ${pipelineName(row)}` : principalName(row);
}

function rowKey(row) {
  return `${row.principal_type}:${row.principal_id}:${row.pipeline_id || ""}`;
}

/** The coverage a row (or a trend's point) is drawn at: the ratio its status judges it
 *  by; null when quota met or no target. */
function ratioOf(row) {
  const metric = JUDGED[row.status];
  return metric && row[metric] !== null ? Number(row[metric]) : null;
}

/** A row's (or a point's) colour: its band's, or its status's when it has no ratio. */
function colorOf(row) {
  return row.band ? COLORS[row.band] : COLORS[row.status] || COLORS.no_target;
}

function rowsOf(type) {
  return state.result ? state.result.rows.filter((row) => row.principal_type === type) : [];
}

function byName(a, b) {
  return principalName(a).localeCompare(principalName(b)) || pipelineName(a).localeCompare(pipelineName(b))
    || a.principal_id.localeCompare(b.principal_id);
}

/** The server's default order (quota met first, then the best coverage, no target last;
 *  by pipeline: by principal, then pipeline). */
function defaultOrder(rows) {
  return [...rows].sort((a, b) => a.order - b.order);
}

// --- sign in, period, runs --------------------------------------------------------------

/** Ends what the page shows of a session: a page that has shown one is loaded afresh
 *  (replacing it in the history, without its #hash or query), so that nothing of the
 *  session outlives it — the scripts' state (this file's, trends.js's, movement.js's),
 *  the charts, every card's tables and lists, the form fields — whoever signs in next.
 *  Resetting each of them by hand would miss the next one added. */
function endSession(message = "") {
  if (leaving) return;
  if (!sessionShown) {
    showLogin(message);
    return;
  }
  try {
    if (message) window.sessionStorage.setItem(LOGIN_MESSAGE_KEY, message);
  } catch (_error) {
    // The fresh page signs in without the message.
  }
  leaving = true;
  window.location.replace(window.location.pathname);
}

/** Tells the browser's other tabs of this dashboard that the session changed (a
 *  `storage` event there; the value is only a time, nothing of the session). */
function announceSessionChange() {
  try {
    window.localStorage.setItem(SESSION_CHANGED_KEY, String(Date.now()));
  } catch (_error) {
    // No storage: the other tabs find out at their next request (401, or other data).
  }
}

/** The message a session that ended left for the sign-in form, if any. */
function loginMessage() {
  try {
    const message = window.sessionStorage.getItem(LOGIN_MESSAGE_KEY) || "";
    window.sessionStorage.removeItem(LOGIN_MESSAGE_KEY);
    return message;
  } catch (_error) {
    return "";
  }
}

function showLogin(message = "") {
  $("dashboard").hidden = true;
  $("who").hidden = true;
  $("login").hidden = false;
  $("login-error").textContent = message;
  state.session = null;
  state.result = null;
  for (const name of ["coverageChart", "noTargetChart", "trendChart"]) {
    if (window[name]) window[name].destroy();
    window[name] = null;
  }
}

async function start() {
  if (sessionShown) {
    endSession(); // another session: on a fresh page
    return;
  }
  try {
    state.session = await api("/session");
  } catch (error) {
    showLogin(loginMessage());
    return;
  }
  sessionShown = true;
  state.metrics = new Map(state.session.metrics.map((metric) => [metric.name, metric]));
  state.columns = savedColumns();
  $("login").hidden = true;
  $("who").hidden = false;
  $("dashboard").hidden = false;
  $("tenant-name").textContent = state.session.tenant_name;
  for (const el of document.querySelectorAll(".band-low")) el.textContent = state.session.low;
  for (const el of document.querySelectorAll(".band-healthy")) el.textContent = state.session.healthy;
  $("period-start").value = state.session.period_start;
  $("period-end").value = state.session.period_end;
  // Run now makes a run with the tenant's default options; the box changes it for one run.
  $("run-rollup").checked = state.session.run_defaults.rollup;
  drawColumnPicker();
  await loadPeriods();
  await loadRuns();
}

function period() {
  return { period_start: $("period-start").value, period_end: $("period-end").value };
}

/** The period picker: the periods with targets or runs (GET /v1/periods), newest first,
 *  and the current fiscal quarter; "Custom" when the dates are another period. */
async function loadPeriods() {
  let listed = [];
  try {
    listed = (await api("/v1/periods")).items;
  } catch (error) {
    $("dashboard-error").textContent = error.message;
  }
  state.periods = listed;
  const options = listed.map((item) => {
    const option = document.createElement("option");
    option.value = `${item.period_start}/${item.period_end}`;
    const counts = [];
    if (item.targets) counts.push(`${item.targets} target${item.targets === 1 ? "" : "s"}`);
    if (item.runs) counts.push(`${item.runs} run${item.runs === 1 ? "" : "s"}`);
    if (item.current) counts.push("current");
    const name = item.name || item.label;
    option.textContent = counts.length ? `${name} · ${counts.join(", ")}` : name;
    return option;
  });
  const custom = document.createElement("option");
  custom.value = "";
  custom.textContent = "Custom dates";
  $("period-picker").replaceChildren(...options, custom);
  syncPeriodPicker();
}

function syncPeriodPicker() {
  const value = `${period().period_start}/${period().period_end}`;
  const picker = $("period-picker");
  picker.value = [...picker.options].some((option) => option.value === value) ? value : "";
}

function pickPeriod() {
  const value = $("period-picker").value;
  if (!value) return;
  const [start, end] = value.split("/");
  $("period-start").value = start;
  $("period-end").value = end;
  loadRuns();
}

function shiftQuarter(step) {
  const [year, month] = $("period-start").value.split("-").map(Number);
  const first = new Date(Date.UTC(year, month - 1 + 3 * step, 1));
  const next = new Date(Date.UTC(first.getUTCFullYear(), first.getUTCMonth() + 3, 1));
  $("period-start").value = first.toISOString().slice(0, 10);
  $("period-end").value = next.toISOString().slice(0, 10);
  syncPeriodPicker();
  loadRuns();
}

function when(timestamp) {
  return new Date(timestamp).toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" });
}

/** The period's batch runs, newest first, in the run picker; then one of them on screen
 *  (`preferred`, else the newest). `loaded` is that run when the caller has it already. */
async function loadRuns(preferred = null, loaded = null) {
  $("dashboard-error").textContent = "";
  const query = new URLSearchParams({ ...period(), mode: "batch", limit: "20" });
  try {
    const page = await api(`/v1/coverage-runs?${query}`);
    state.runs = page.items;
    const select = $("run-select");
    select.replaceChildren(...state.runs.map((run) => {
      const option = document.createElement("option");
      option.value = run.run_id;
      const kinds = [run.parameters.by_pipeline ? " · by pipeline" : "", run.parameters.rollup ? " · rolled up" : "",
        run.as_recorded ? ` · as recorded on ${run.parameters.as_of}` : ""];
      option.textContent = `${when(run.generated_at)}${kinds.join("")}`;
      return option;
    }));
    select.disabled = state.runs.length === 0;
    const usual = state.runs.find(madeWithDefaults);
    const chosen = state.runs.some((run) => run.run_id === preferred) ? preferred
      : usual ? usual.run_id : state.runs.length ? state.runs[0].run_id : null;
    if (chosen === null) {
      show(loaded);
      return;
    }
    select.value = chosen;
    show(loaded && loaded.run.run_id === chosen ? loaded : await api(`/v1/coverage-runs/${chosen}`));
  } catch (error) {
    $("dashboard-error").textContent = error.message;
  }
}

/** Whether a run was made with the tenant's default roll-up and target matching: the
 *  run the dashboard opens on (the newest such run; else the newest run). */
function madeWithDefaults(run) {
  const defaults = state.session.run_defaults;
  return Boolean(run.parameters.rollup) === defaults.rollup
    && (run.parameters.target_match || "exact") === defaults.target_match;
}

async function showRun(runId) {
  $("dashboard-error").textContent = "";
  try {
    show(await api(`/v1/coverage-runs/${runId}`));
  } catch (error) {
    $("dashboard-error").textContent = error.message;
  }
}

/** The browser's today, YYYY-MM-DD (the operator's local day, as a scheduler's). */
function localToday() {
  const now = new Date();
  const pad = (n) => String(n).padStart(2, "0");
  return `${now.getFullYear()}-${pad(now.getMonth() + 1)}-${pad(now.getDate())}`;
}

/** The as-of day of a run made now of a period that is over: its last day, so that the
 *  run is a point of that period (its trend, the waterfall's "a week before") rather
 *  than of today; null while the period lasts or has not begun (the server's today). */
function pastPeriodDay(periodEnd) {
  if (localToday() < periodEnd) return null;
  const [year, month, day] = periodEnd.split("-").map(Number);
  return new Date(Date.UTC(year, month - 1, day - 1)).toISOString().slice(0, 10);
}

async function runNow() {
  const button = $("run-now");
  button.disabled = true;
  $("dashboard-error").textContent = "";
  $("run-status").textContent = "Computing a new run…";
  try {
    const body = { ...period(), by_pipeline: $("run-by-pipeline").checked, rollup: $("run-rollup").checked };
    const asOf = pastPeriodDay(body.period_end);
    if (asOf) body.as_of = asOf;
    if ($("run-as-recorded").checked) {
      // A run as recorded on a day: the deals as the imports had them at its end.
      const day = $("run-recorded-day").value;
      if (!day) throw new Error("Choose the day the run is as recorded on.");
      body.as_of = day;
      body.as_recorded = true;
    }
    const created = await api("/v1/coverage-runs", { method: "POST", body });
    await loadPeriods(); // the period now has one run more
    await loadRuns(created.run_id, created);
  } catch (error) {
    $("dashboard-error").textContent = error.message;
    if (state.result) describeRun(state.result);
  } finally {
    button.disabled = false;
  }
}

// --- a run on screen ----------------------------------------------------------------------

/** A period as the server labels it (FY2027-Q1 · 2026-07-01 – 2026-09-30): the run's, or
 *  the period picker's; the dates as they are for a period neither knows. */
function periodLabel(startText, endText) {
  const run = state.result && state.result.run;
  if (run && run.period_start === startText && run.period_end === endText) return run.period_label;
  const known = state.periods.find((p) => p.period_start === startText && p.period_end === endText);
  return known ? known.label : `${startText} to ${endText} (end exclusive)`;
}

function describeRun(result) {
  const { run, rows } = result;
  const parameters = run.parameters;
  const reps = new Set(rows.filter((r) => r.principal_type === "USER").map((r) => r.principal_id)).size;
  const teams = new Set(rows.filter((r) => r.principal_type === "GROUP").map((r) => r.principal_id)).size;
  const parts = [`generated ${when(run.generated_at)}`];
  // A run as recorded says so first: its deals are as they stood that day, not now.
  if (run.as_recorded) parts.unshift(`As recorded: the deals as they stood at the end of ${parameters.as_of}`);
  if (parameters.as_of) parts.push(`as of ${parameters.as_of}`);
  if (parameters.currency) parts.push(`amounts in ${parameters.currency}`);
  if (parameters.by_pipeline) parts.push("by pipeline");
  else if (parameters.pipeline_id) {
    const scoped = rows.find((r) => r.pipeline_id === parameters.pipeline_id);
    parts.push(`pipeline ${scoped ? pipelineName(scoped) : parameters.pipeline_id.slice(0, 8)} only`);
  }
  if (parameters.target_match === "within") parts.push("targets within the period");
  if (parameters.rollup) parts.push("teams rolled up over their members and sub-teams");
  parts.push(`${reps} rep${reps === 1 ? "" : "s"}, ${teams} team${teams === 1 ? "" : "s"}`);
  $("run-status").textContent = parts.join(" · ");
}

function show(result) {
  closeSelection();
  state.result = result;
  const status = $("run-status");
  if (!result) {
    $("run-title").textContent = `No run for ${periodLabel(period().period_start, period().period_end)} yet`;
    status.textContent = "Press “Run now” to compute one.";
    status.dataset.runId = "";
    $("run-id").textContent = "";
    $("run-header").classList.add("empty");
    $("exclusions").hidden = true;
    $("content").hidden = true;
    return;
  }
  $("run-header").classList.remove("empty");
  $("run-title").textContent = periodLabel(result.run.period_start, result.run.period_end);
  describeRun(result);
  status.dataset.runId = result.run.run_id;
  $("run-id").textContent = result.run.run_id;
  drawExclusions(result.exclusions);
  $("content").hidden = false;
  drawTotal();
  drawView();
  document.dispatchEvent(new CustomEvent("run-shown", { detail: result })); // movement.js
}

function drawExclusions(exclusions) {
  $("exclusions").hidden = exclusions.length === 0;
  $("exclusion-list").replaceChildren(...exclusions.map((item) => {
    const li = document.createElement("li");
    li.textContent = item.message;
    li.dataset.flag = item.flag;
    return li;
  }));
}

function figure(term, value, key) {
  const dt = document.createElement("dt");
  dt.textContent = term;
  const dd = document.createElement("dd");
  dd.textContent = value;
  dd.dataset.key = key;
  return [dt, dd];
}

/** The reps' rows added up, as the server added them (totals.py): target, won and
 * open, the net remaining, and apart the shortfall of the reps still short. */
function drawTotal() {
  const reps = rowsOf("USER");
  const totals = state.result ? state.result.totals : null;
  const unit = currency() ? ` ${currency()}` : "";
  const money = (value) => formatScaled(cents(value), 2) + unit;
  const ratio = (value) => value === null ? "—" : `${Number(value).toFixed(2)}x`;
  const withTarget = totals ? totals.rows_with_target : 0;
  const shortRows = totals ? totals.short_rows : 0;
  if (!totals) {
    $("total").replaceChildren();
  } else {
    const attainment = totals.attainment_ratio === null ? "—"
      : `${(Number(totals.attainment_ratio) * 100).toFixed(1)}%`;
    const coverage = withTarget === 0 ? "no target"
      : cents(totals.remaining_target) === 0n ? "quota met" : ratio(totals.remaining_coverage_ratio);
    $("total").replaceChildren(
      ...figure("Target", money(totals.target_amount), "target_amount"),
      ...figure("Won", money(totals.won_amount), "won_amount"),
      ...figure("Open", money(totals.open_amount), "open_amount"),
      ...figure("Attainment", attainment, "attainment_ratio"),
      ...figure("Remaining (net)", money(totals.remaining_target), "remaining_target"),
      ...figure("Coverage of remaining", coverage, "remaining_coverage_ratio"),
      ...figure(`Still short (${shortRows} rep${shortRows === 1 ? "" : "s"})`,
        money(totals.shortfall_amount), "shortfall_amount"),
      ...figure("Their coverage", ratio(totals.shortfall_coverage_ratio), "shortfall_coverage_ratio"),
    );
  }
  const count = new Set(reps.map((r) => r.principal_id)).size;
  $("total-scope").textContent = `(${count} rep${count === 1 ? "" : "s"})`;
  $("total-note").textContent =
    `The sum of the reps' rows in this run${byPipeline() ? " (every rep's every pipeline)" : ""}: `
    + `target (${withTarget} of ${reps.length} row${reps.length === 1 ? "" : "s"} have one), won and open. `
    + "Remaining (net) is the summed target less the summed wins: reps over quota offset reps short of it. "
    + "Still short is the remaining quota of the reps who have not made theirs, and their coverage is their own open pipeline against it. "
    + "Teams are not added in, since a team's deals are its reps' deals too; "
    + "a deal credited to two reps (owner and assignee) counts for both.";
}

// --- reps and teams ----------------------------------------------------------------------

function setView(type) {
  if (type !== state.view) closeSelection();
  state.view = type;
  state.sort = null;
  drawView();
}

function closeSelection() {
  state.request += 1;
  state.selected = null;
  $("deals-card").hidden = true;
  $("trend-card").hidden = true;
  for (const tr of $("coverage-table").querySelectorAll("tbody tr.selected")) tr.classList.remove("selected");
}

function drawView() {
  for (const type of ["USER", "GROUP"]) {
    const tab = $(`tab-${type}`);
    const count = new Set(rowsOf(type).map((r) => r.principal_id)).size;
    tab.textContent = `${type === "USER" ? "Reps" : "Teams"} (${count})`;
    const selected = type === state.view;
    tab.setAttribute("aria-selected", String(selected));
    tab.tabIndex = selected ? 0 : -1;
  }
  $("view").setAttribute("aria-labelledby", `tab-${state.view}`);
  const who = state.view === "USER" ? "Reps" : "Teams";
  $("chart-title").textContent = `${who}${byPipeline() ? " by pipeline" : ""}: coverage of the remaining quota`;
  const rows = rowsOf(state.view);
  drawCoverageChart(rows);
  drawNoTargetChart(rows);
  drawTable(rows);
}

const TEXT_PX = 11;
const TEXT_GAP = 6; // the least room between two bars' texts

/** A Chart.js plugin (an object, no eval): writes a text above or beside each bar.
 *  Above bars, a text that would run into the last one written is left out (bars
 *  too narrow for their texts show every other one, or fewer: the Data table and the
 *  tooltips have them all), and a text that would be cut off at the top of the
 *  canvas goes inside its bar. What was written is kept in `chart.$barTexts`. */
function barTexts(texts) {
  return {
    id: "barTexts",
    afterDatasetsDraw(chart) {
      const { ctx } = chart;
      const horizontal = chart.options.indexAxis === "y";
      const written = [];
      ctx.save();
      ctx.font = `${TEXT_PX}px system-ui, sans-serif`;
      ctx.textAlign = horizontal ? "left" : "center";
      let right = -Infinity;
      chart.getDatasetMeta(0).data.forEach((bar, index) => {
        const text = texts[index];
        if (!text) return;
        if (horizontal) {
          ctx.fillStyle = INK;
          ctx.textBaseline = "middle";
          ctx.fillText(text, bar.x + 6, bar.y);
          written.push({ index, text, left: bar.x + 6, right: bar.x + 6 + ctx.measureText(text).width, top: bar.y - TEXT_PX / 2 });
          return;
        }
        const width = ctx.measureText(text).width;
        const left = bar.x - width / 2;
        if (left < right + TEXT_GAP) return; // would overlap the text before it
        right = bar.x + width / 2;
        const above = bar.y - 4 - TEXT_PX >= 0;
        ctx.fillStyle = above ? INK : "#fff";
        ctx.textBaseline = above ? "bottom" : "top";
        const y = above ? bar.y - 4 : bar.y + 4;
        ctx.fillText(text, bar.x, y);
        written.push({ index, text, left, right, top: above ? y - TEXT_PX : y });
      });
      ctx.restore();
      chart.$barTexts = written;
    },
  };
}

/** A Chart.js plugin: the dashed reference line at `value` on the y axis, across the
 *  whole plot (a line dataset would need two bars to show); with `label`, written at
 *  its right end. */
function referenceLine(value, { id = "referenceLine", color = INK, dash = [6, 4], label = "" } = {}) {
  return {
    id,
    value,
    afterDatasetsDraw(chart) {
      const { ctx, chartArea } = chart;
      const y = chart.scales.y.getPixelForValue(value);
      if (y < chartArea.top || y > chartArea.bottom) return;
      ctx.save();
      ctx.strokeStyle = color;
      ctx.lineWidth = 2;
      ctx.setLineDash(dash);
      ctx.beginPath();
      ctx.moveTo(chartArea.left, y);
      ctx.lineTo(chartArea.right, y);
      ctx.stroke();
      if (label) {
        ctx.font = "bold 11px system-ui, sans-serif";
        ctx.fillStyle = color;
        ctx.textAlign = "right";
        ctx.textBaseline = "bottom";
        ctx.fillText(label, chartArea.right - 4, y - 3);
      }
      ctx.restore();
    },
  };
}

const CALIBRATED = "#7048e8";

/** The run's calibration for the view's principals (SPEC.md §14), as the server sent
 *  it: the sentence it decided ("needs 2.4x at week 6 for 80% ..." or why there is
 *  none), and the coverage at 80% and the week when there is a fit. */
function calibrationOf(type) {
  const run = state.result.run;
  const note = (run.calibration_notes || {})[type] || "";
  const fits = run.parameters.calibration || {};
  const fit = fits[type] || {};
  const coverage80 = fit.coverage_80 === undefined ? null : Number(fit.coverage_80);
  return { note, coverage80, week: fits.week };
}

function money(text) {
  return text === null ? "—" : `${formatMoney(text)}${currency() ? " " + currency() : ""}`;
}

function coverageTooltip(row) {
  const kind = row.status;
  if (kind === "quota_met") {
    return `quota met · won ${money(row.won_amount)} of ${money(row.target_amount)} · open ${money(row.open_amount)}`;
  }
  if (kind === "legacy") return `coverage ${formatValue(state.metrics.get("coverage_ratio"), row.coverage_ratio)}`;
  return `${formatValue(state.metrics.get("remaining_coverage_ratio"), row.remaining_coverage_ratio)}`
    + ` of the remaining quota · open ${money(row.open_amount)} / remaining ${money(row.remaining_target)}`;
}

function drawCoverageChart(all) {
  const rows = defaultOrder(all.filter((row) => row.status !== "no_target"));
  const healthy = state.session.healthy;
  const attainment = state.metrics.get("attainment_ratio");
  $("chart-empty").hidden = rows.length > 0;
  $("chart-empty").textContent = `No ${state.view === "USER" ? "rep" : "team"} in this run has a target.`;
  $("coverage-chart").parentElement.hidden = rows.length === 0;
  const data = {
    labels: rows.map(rowLabel),
    datasets: [
      {
        type: "bar", label: "Coverage of the remaining quota", yAxisID: "y", order: 3,
        data: rows.map((row) => (row.status === "quota_met" ? healthy : ratioOf(row))),
        backgroundColor: rows.map(colorOf), maxBarThickness: 90,
      },
      {
        type: "line", label: "Attainment (won / target)", yAxisID: "attainment", order: 1, showLine: false,
        data: rows.map((row) => (row.attainment_ratio === null ? null : Number(row.attainment_ratio) * 100)),
        pointStyle: "rectRot", pointRadius: 6, pointHoverRadius: 8,
        backgroundColor: INK, borderColor: "#fff", borderWidth: 1,
      },
    ],
  };
  const texts = rows.map((row) => (row.status === "quota_met" ? STATUS_PILL.quota_met[0]
    : formatValue(state.metrics.get("remaining_coverage_ratio"), row.remaining_coverage_ratio ?? row.coverage_ratio)));
  // Beside the 3x line, the coverage this tenant's history says gives an 80% chance
  // at the run's week of the quarter (SPEC.md §14), and the server's sentence on it.
  const calibration = calibrationOf(state.view);
  $("calibration-note").hidden = !calibration.note;
  $("calibration-note").textContent = calibration.note
    ? `${state.view === "USER" ? "Reps" : "Teams"}: ${calibration.note}` : "";
  $("calibration-legend").hidden = calibration.coverage80 === null;
  const lines = [referenceLine(healthy)];
  if (calibration.coverage80 !== null) {
    lines.push(referenceLine(calibration.coverage80, {
      id: "calibratedLine", color: CALIBRATED, dash: [2, 3],
      label: `needs ${calibration.coverage80.toFixed(1)}x at week ${calibration.week} for 80%`,
    }));
  }
  if (window.coverageChart) window.coverageChart.destroy();
  window.coverageChart = new Chart($("coverage-chart"), {
    data,
    plugins: [barTexts(texts), ...lines],
    options: {
      maintainAspectRatio: false,
      animation: false,
      layout: { padding: { top: TEXT_PX + 8 } }, // room for the tallest bar's text
      interaction: { mode: "index", intersect: false },
      plugins: {
        legend: { display: false },
        tooltip: {
          callbacks: {
            label: (item) => {
              const row = rows[item.dataIndex];
              if (item.datasetIndex === 1) {
                return `attainment ${formatValue(attainment, row.attainment_ratio)} (won ${money(row.won_amount)})`;
              }
              return coverageTooltip(row);
            },
          },
        },
      },
      scales: {
        y: {
          beginAtZero: true, suggestedMax: Math.max(healthy, calibration.coverage80 || 0) * 1.25,
          title: { display: true, text: "coverage of the remaining quota (x)" },
        },
        attainment: {
          position: "right", beginAtZero: true, suggestedMax: 100, grid: { drawOnChartArea: false },
          title: { display: true, text: "attainment (%)" },
          ticks: { callback: (value) => `${value}%` },
        },
      },
      onClick: (event, _elements, chart) => {
        const found = chart.getElementsAtEventForMode(event, "index", { intersect: false }, true);
        if (found.length) select(rows[found[0].index]);
      },
      onHover: (event, elements) => {
        event.native.target.classList.toggle("clickable", elements.length > 0);
      },
    },
  });
}

function drawNoTargetChart(all) {
  // Rows without a target but with something open: their open pipeline, in grey.
  const rows = defaultOrder(all.filter((row) => row.status === "no_target" && !isZero(row.open_amount)))
    .sort((a, b) => Number(b.open_amount) - Number(a.open_amount));
  const box = $("no-target-box");
  box.hidden = rows.length === 0;
  if (window.noTargetChart) window.noTargetChart.destroy();
  window.noTargetChart = null;
  if (!rows.length) return;
  box.querySelector(".chart-box").style.height = `${Math.max(90, 34 * rows.length + 50)}px`;
  window.noTargetChart = new Chart($("no-target-chart"), {
    type: "bar",
    data: {
      labels: rows.map(rowLabel),
      datasets: [{
        label: "Open pipeline (no target)", data: rows.map((row) => Number(row.open_amount)),
        backgroundColor: COLORS.no_target, maxBarThickness: 22,
      }],
    },
    plugins: [barTexts(rows.map((row) => `no target · open ${money(row.open_amount)}`))],
    options: {
      indexAxis: "y",
      maintainAspectRatio: false,
      animation: false,
      layout: { padding: { right: 200 } },
      plugins: {
        legend: { display: false },
        tooltip: { callbacks: { label: (item) => `no target · open ${money(rows[item.dataIndex].open_amount)}` } },
      },
      scales: { x: { beginAtZero: true, title: { display: true, text: `open pipeline${currency() ? " (" + currency() + ")" : ""}` } } },
      onClick: (event, _elements, chart) => {
        const found = chart.getElementsAtEventForMode(event, "index", { intersect: false, axis: "y" }, true);
        if (found.length) select(rows[found[0].index]);
      },
    },
  });
}

// --- the table ------------------------------------------------------------------------------

function savedColumns() {
  try {
    const saved = JSON.parse(window.localStorage.getItem(COLUMNS_KEY) || "null");
    if (Array.isArray(saved)) {
      const known = saved.filter((name) => state.metrics.has(name));
      if (known.length) return known;
    }
  } catch (_error) {
    // Storage may be unavailable or hold something else: fall back to the default.
  }
  return state.session.headline.filter((name) => state.metrics.has(name));
}

function setColumns(columns) {
  state.columns = columns;
  try {
    window.localStorage.setItem(COLUMNS_KEY, JSON.stringify(columns));
  } catch (_error) {
    // Not remembered: still shown.
  }
  for (const box of $("column-options").querySelectorAll("input")) box.checked = columns.includes(box.value);
  if (state.result) drawTable(rowsOf(state.view));
}

function drawColumnPicker() {
  $("column-options").replaceChildren(...state.session.metrics.map((metric) => {
    const label = document.createElement("label");
    label.title = metric.description;
    const box = document.createElement("input");
    box.type = "checkbox";
    box.value = metric.name;
    box.checked = state.columns.includes(metric.name);
    box.addEventListener("change", () => {
      const rest = state.columns.filter((name) => name !== metric.name);
      setColumns(box.checked ? [...rest, metric.name] : rest);
    });
    label.append(box, ` ${metric.label}`);
    return label;
  }));
}

function tableColumns(rows) {
  const columns = [{ key: "principal", label: state.view === "USER" ? "Rep" : "Team", text: true }];
  if (byPipeline()) columns.push({ key: "pipeline", label: "Pipeline", text: true });
  const names = [...state.columns];
  // A rolled-up run: a team's member targets beside its own target.
  if (state.view === "GROUP" && state.result.run.parameters.rollup && !names.includes("member_target_amount")) {
    names.splice(names.includes("target_amount") ? names.indexOf("target_amount") + 1 : 0, 0, "member_target_amount");
  }
  for (const name of names) {
    const metric = state.metrics.get(name);
    const unit = metric.kind === "money" && currency() ? ` (${currency()})` : "";
    columns.push({ key: name, label: metric.label + unit, metric });
  }
  if (rows.some((row) => row.flags.length)) columns.push({ key: "flags", label: "Flags", text: true });
  return columns;
}

function sortValue(row, key) {
  if (key === "principal") return `${principalName(row)}\u0000${pipelineName(row)}`.toLowerCase();
  if (key === "pipeline") return `${pipelineName(row)}\u0000${principalName(row)}`.toLowerCase();
  if (key === "flags") return row.flags.join(",");
  const value = row[key];
  if (value === null || value === undefined) {
    // Quota met is the best coverage of the remaining quota there is.
    return key === "remaining_coverage_ratio" && row.status === "quota_met" ? Infinity : -Infinity;
  }
  return Number(value);
}

function sortedRows(rows) {
  if (!state.sort) return defaultOrder(rows);
  const { key, dir } = state.sort;
  return [...rows].sort((a, b) => {
    const x = sortValue(a, key);
    const y = sortValue(b, key);
    return (x < y ? -dir : x > y ? dir : 0) || byName(a, b);
  });
}

function pill(text, kind) {
  const span = document.createElement("span");
  span.className = `pill ${kind}`;
  span.textContent = text;
  return span;
}

function metricCell(metric, row) {
  const td = document.createElement("td");
  td.className = "num";
  td.dataset.metric = metric.name;
  const value = row[metric.name];
  // The banded ratios: the band the server gave (a row's own coverage, or its seed
  // coverage_ratio's), or the words of a status without a ratio.
  if (metric.name === "remaining_coverage_ratio" || metric.name === "coverage_ratio") {
    const shown = metric.name === "coverage_ratio" ? row.coverage_band : row.status === "coverage" ? row.band : null;
    const note = STATUS_PILL[row.status];
    if (value !== null && shown) {
      td.append(pill(formatValue(metric, value), shown));
    } else if (note && (row.status === "no_target" || metric.name === "remaining_coverage_ratio")) {
      td.append(pill(...note));
    } else {
      td.textContent = value === null ? "—" : formatValue(metric, value);
    }
    return td;
  }
  if (metric.name === "pipeline_gap" && row.status === "quota_met") {
    // (stored by formula: minus the open pipeline once quota is met, which is no gap)
    td.append(pill("quota met", "met"));
    return td;
  }
  td.textContent = formatValue(metric, value);
  if (metric.kind !== "count" && value !== null && value !== undefined && String(value).startsWith("-")) {
    td.classList.add("negative");
  }
  return td;
}

function drawTable(all) {
  const columns = tableColumns(all);
  const head = $("coverage-table").querySelector("thead tr");
  head.replaceChildren(...columns.map((column) => {
    const th = document.createElement("th");
    th.scope = "col";
    th.dataset.key = column.key;
    if (!column.text) th.className = "num";
    if (column.metric) th.title = column.metric.description;
    const button = document.createElement("button");
    button.type = "button";
    button.className = "sort";
    button.textContent = column.label;
    button.addEventListener("click", () => {
      const same = state.sort && state.sort.key === column.key;
      state.sort = { key: column.key, dir: same ? -state.sort.dir : column.text ? 1 : -1 };
      drawTable(rowsOf(state.view));
      $("coverage-table").querySelector(`th[data-key="${column.key}"] button`).focus();
    });
    th.append(button);
    if (state.sort && state.sort.key === column.key) {
      th.setAttribute("aria-sort", state.sort.dir === 1 ? "ascending" : "descending");
    }
    return th;
  }));
  const rows = sortedRows(all);
  // By pipeline, in the default order: a line above each principal's group of rows.
  const grouping = byPipeline() && !state.sort;
  $("coverage-table").querySelector("tbody").replaceChildren(...rows.map((row, index) => {
    const tr = document.createElement("tr");
    tr.tabIndex = 0;
    tr.dataset.key = rowKey(row);
    if (grouping && index > 0 && rows[index - 1].principal_id !== row.principal_id) {
      tr.classList.add("group-start");
    }
    tr.classList.toggle("selected", state.selected !== null && rowKey(state.selected) === rowKey(row));
    for (const column of columns) {
      if (column.metric) {
        tr.append(metricCell(column.metric, row));
        continue;
      }
      const cell = document.createElement(column.key === "principal" ? "th" : "td");
      cell.dataset.key = column.key;
      if (column.key === "principal") {
        cell.scope = "row";
        cell.textContent = principalName(row);
        // A rolled-up run's teams, in the default order, as the server's tree: each
        // indented under the team above it (CSS draws the indent and the branch).
        if (!state.sort && row.depth) {
          cell.dataset.depth = String(Math.min(row.depth, 6));
          cell.title = `in ${row.parent_label}`;
        }
      } else if (column.key === "pipeline") {
        cell.textContent = pipelineName(row);
      } else {
        for (const note of row.flag_notes) {
          const tag = pill(note.label, "flag");
          tag.title = note.description;
          tag.dataset.flag = note.flag;
          cell.append(tag);
        }
      }
      tr.append(cell);
    }
    tr.addEventListener("click", () => select(row));
    tr.addEventListener("keydown", (event) => {
      if (event.key === "Enter" || event.key === " ") {
        event.preventDefault();
        select(row);
      }
    });
    return tr;
  }));
}

// --- a principal: its deals and trend -----------------------------------------------------------

function select(row) {
  state.selected = row;
  for (const tr of $("coverage-table").querySelectorAll("tbody tr")) {
    tr.classList.toggle("selected", tr.dataset.key === rowKey(row));
  }
  const request = ++state.request;
  openDeals(row, request);
  trend(row, request);
  document.dispatchEvent(new CustomEvent("row-selected", { detail: row })); // movement.js
}

function whoText(row) {
  return `${rowLabel(row)}${row.principal_type === "GROUP" ? " (team)" : ""}`;
}

async function allDeals(run, row, request) {
  const deals = [];
  let cursor = null;
  do {
    const query = new URLSearchParams({
      principal_type: row.principal_type, principal_id: row.principal_id, limit: String(DEALS_PAGE),
    });
    if (cursor) query.set("cursor", cursor);
    const page = await api(`/v1/coverage-runs/${run.run_id}/deals?${query}`);
    if (request !== state.request) return null;
    // The endpoint lists the principal's deals in every pipeline: keep the row's.
    for (const deal of page.deals) if (deal.pipeline_id === row.pipeline_id) deals.push(deal);
    cursor = page.next_cursor;
    if (cursor) $("deals-status").textContent = `Loading deals… ${deals.length} so far`;
  } while (cursor);
  return deals;
}

async function openDeals(row, request) {
  const run = state.result.run;
  $("deals-card").hidden = false;
  $("deals-title").textContent = `Deals behind ${whoText(row)}`;
  $("deals-status").textContent = "Loading deals…";
  $("deals-totals").replaceChildren();
  $("deals-table").querySelector("tbody").replaceChildren();
  $("deals-card").dataset.key = rowKey(row);
  $("deals-card").dataset.loaded = "";
  $("deals-card").scrollIntoView({ block: "nearest" });
  let deals;
  try {
    deals = await allDeals(run, row, request);
  } catch (error) {
    $("deals-status").textContent = `Could not load the deals: ${error.message}`;
    return;
  }
  if (deals === null) return; // another principal was picked meanwhile
  if (deals.length === 0 && row.open_count === null) {
    // A run stored before the metrics and the drill-down existed: no deals were kept.
    $("deals-status").textContent = "This run was stored before deals were kept with runs: run it again to see them.";
    $("deals-card").dataset.loaded = "true";
    return;
  }
  drawDeals(row, deals);
  $("deals-card").dataset.loaded = "true";
  $("deals-title").focus({ preventScroll: true });
}

function drawDeals(row, deals) {
  const order = (deal) => CLASS_ORDER.indexOf(deal.class);
  deals.sort((a, b) => order(a) - order(b) || (a.placed_on || "").localeCompare(b.placed_on || "")
    || a.deal_name.localeCompare(b.deal_name));
  const totals = new Map(CLASS_ORDER.map((name) => [name, { count: 0, cents: 0n }]));
  for (const deal of deals) {
    const total = totals.get(deal.class);
    // A deal without an exchange rate (NO_RATE) is in no amount and no count.
    if (!total || deal.reporting_amount === null) continue;
    total.count += 1;
    total.cents += cents(deal.reporting_amount);
  }
  const unit = currency() ? ` ${currency()}` : "";
  const figures = [];
  for (const name of CLASS_ORDER) {
    const total = totals.get(name);
    const metric = CLASS_METRIC[name];
    const rowValue = row[metric];
    if (total.count === 0 && (rowValue === null || rowValue === undefined || isZero(rowValue))) continue;
    const dt = document.createElement("dt");
    dt.textContent = `${CLASS_LABEL[name]} · ${total.count} deal${total.count === 1 ? "" : "s"}`;
    const dd = document.createElement("dd");
    const amount = document.createElement("span");
    amount.className = "amount";
    amount.dataset.total = name;
    amount.textContent = formatScaled(total.cents, 2) + unit;
    const check = document.createElement("small");
    const label = state.metrics.get(metric) ? state.metrics.get(metric).label : metric;
    if (rowValue !== null && rowValue !== undefined && cents(rowValue) === total.cents) {
      check.textContent = `= the row's ${label}`;
    } else {
      check.textContent = `≠ the row's ${label} (${rowValue === null || rowValue === undefined ? "—" : formatMoney(rowValue)})`;
      check.className = "mismatch";
    }
    dd.append(amount, " ", check);
    figures.push(dt, dd);
  }
  $("deals-totals").replaceChildren(...figures);
  const shown = deals.slice(0, DEALS_SHOWN);
  $("deals-table").querySelector("tbody").replaceChildren(...shown.map((deal) => dealRow(deal)));
  const where = byPipeline() && row.pipeline_id ? ` in ${pipelineName(row)}` : "";
  $("deals-status").textContent = deals.length === 0
    ? `No deal is credited to ${whoText(row)} in this run.`
    : `${deals.length} deal${deals.length === 1 ? "" : "s"}${where} as the run saw them`
      + (deals.length > shown.length ? ` (the first ${shown.length} listed; the totals cover all)` : "");
}

function dealRow(deal) {
  const tr = document.createElement("tr");
  const cell = (text, className = "") => {
    const td = document.createElement("td");
    td.textContent = text;
    if (className) td.className = className;
    tr.append(td);
    return td;
  };
  cell(deal.deal_name);
  cell("").append(pill(CLASS_LABEL[deal.class] || deal.class, `class-${deal.class.toLowerCase()}`));
  cell(deal.credit_reason.toLowerCase().replaceAll("_", " "));
  cell(deal.forecast_category.toLowerCase().replaceAll("_", " "));
  cell(deal.stage_name);
  cell(deal.placed_on || "no date");
  const noRate = deal.reporting_amount === null;
  const amount = cell(noRate ? "no rate" : formatMoney(deal.reporting_amount), "num");
  amount.dataset.cents = noRate ? "" : cents(deal.reporting_amount).toString();
  if (deal.amount === null) {
    amount.append(" ", Object.assign(document.createElement("small"), { textContent: "(no amount)" }));
  } else if (deal.currency !== currency()) {
    amount.append(" ", Object.assign(document.createElement("small"), {
      textContent: `(${formatMoney(deal.amount)} ${deal.currency})`,
    }));
  }
  const flags = cell("");
  for (const flag of deal.flags) flags.append(pill(flag.toLowerCase().replaceAll("_", " "), "flag"));
  return tr;
}

// trend(row, request): the principal's trend and the same point of the quarter, in trends.js.

// --- importing a CRM export -----------------------------------------------------------------

/** The import form as POST /v1/imports takes it; null (and a word why) when incomplete. */
function importForm(dryRun) {
  const deals = $("import-deals").files[0];
  if (!deals) {
    $("import-status").textContent = "Choose the deals export first.";
    return null;
  }
  const form = new FormData();
  form.append("deals", deals);
  for (const name of ["teams", "targets"]) {
    const file = $(`import-${name}`).files[0];
    if (file) form.append(name, file);
  }
  const format = $("import-format").value;
  if (format === "mapping") {
    const mapping = $("import-mapping").files[0];
    if (!mapping) {
      $("import-status").textContent = "Choose the mapping file, or another format.";
      return null;
    }
    form.append("mapping", mapping);
  } else if (format) {
    form.append("format", format);
  }
  if ($("import-full").checked) {
    form.append("full", "true");
    form.append("max_delete", $("import-max-delete").value || "10");
  }
  if (dryRun) form.append("dry_run", "true");
  return form;
}

/** Sends the import (or its dry run) and shows what it did, or every problem, as text:
 *  names in a file are anyone's, never HTML. A real import reloads the periods and runs,
 *  so the new data can be run at once. */
async function importExport(dryRun) {
  const form = importForm(dryRun);
  if (form === null) return;
  const buttons = [$("import-dry-run"), $("import-run")];
  for (const button of buttons) button.disabled = true;
  $("import-problems").hidden = true;
  $("import-problems").replaceChildren();
  $("import-summary").hidden = true;
  $("import-status").textContent = dryRun ? "Checking the files…" : "Importing…";
  try {
    const response = await fetch("/v1/imports", {
      method: "POST", credentials: "same-origin", headers: { Accept: "application/json" }, body: form,
    });
    if (response.status === 401) {
      endSession("Your session has ended: sign in again.");
      return;
    }
    const body = await response.json().catch(() => ({}));
    if (!response.ok) {
      const problems = (body.errors || []).map((error) => error.message).filter(Boolean);
      const lines = problems.length ? problems : [body.detail || `${response.status} ${response.statusText}`];
      $("import-problems").replaceChildren(...lines.map((line) => {
        const item = document.createElement("li");
        item.textContent = line;
        return item;
      }));
      $("import-problems").hidden = false;
      const more = /\(and (\d+) more\)$/.exec(body.detail || "");
      const total = lines.length + (more ? Number(more[1]) : 0);
      $("import-status").textContent = `Nothing was imported: ${total} problem${total === 1 ? "" : "s"} to fix.`;
      return;
    }
    const deals = body.deals;
    const counts = `${deals.new} new, ${deals.updated} updated, ${deals.unchanged} unchanged, ${deals.deleted} deleted`;
    $("import-status").textContent = body.dry_run
      ? `Dry run, nothing written: the import would make ${counts}.`
      : `Imported: ${counts}.`;
    $("import-summary").textContent = body.summary.join("\n");
    $("import-summary").hidden = false;
    if (!body.dry_run) {
      await loadPeriods(); // new targets make new periods
      await loadRuns();
    }
  } catch (error) {
    $("import-status").textContent = error.message;
  } finally {
    for (const button of buttons) button.disabled = false;
  }
}

// --- wiring -----------------------------------------------------------------------------------------

document.addEventListener("DOMContentLoaded", () => {
  $("login-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    try {
      await api("/session", { method: "POST", body: { api_key: $("api-key").value.trim() } });
      $("api-key").value = "";
      announceSessionChange();
      await start();
    } catch (error) {
      showLogin(error.message);
    }
  });
  $("sign-out").addEventListener("click", async () => {
    await api("/session", { method: "DELETE" }).catch(() => null);
    announceSessionChange();
    endSession();
  });
  // The cookie is the browser's, not the tab's: when another tab signs in or out, the
  // session this tab shows is over too.
  window.addEventListener("storage", (event) => {
    if (event.key === SESSION_CHANGED_KEY) endSession();
  });
  $("period-form").addEventListener("submit", (event) => { event.preventDefault(); syncPeriodPicker(); loadRuns(); });
  $("period-picker").addEventListener("change", pickPeriod);
  $("previous-quarter").addEventListener("click", () => shiftQuarter(-1));
  $("next-quarter").addEventListener("click", () => shiftQuarter(1));
  $("run-select").addEventListener("change", () => showRun($("run-select").value));
  $("run-now").addEventListener("click", runNow);
  $("reset-columns").addEventListener("click", () => setColumns([...state.session.headline]));
  $("close-deals").addEventListener("click", closeSelection);
  $("import-dry-run").addEventListener("click", () => importExport(true));
  $("import-run").addEventListener("click", () => importExport(false));
  $("import-format").addEventListener("change", () => {
    $("import-mapping-label").hidden = $("import-format").value !== "mapping";
  });
  $("import-full").addEventListener("change", () => {
    $("import-max-delete").disabled = !$("import-full").checked;
  });
  const tabs = ["USER", "GROUP"];
  for (const type of tabs) {
    const tab = $(`tab-${type}`);
    tab.addEventListener("click", () => setView(type));
    tab.addEventListener("keydown", (event) => {
      if (event.key !== "ArrowLeft" && event.key !== "ArrowRight") return;
      const other = tabs[(tabs.indexOf(type) + 1) % tabs.length];
      setView(other);
      $(`tab-${other}`).focus();
    });
  }
  start();
});
