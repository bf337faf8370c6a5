// What moved between two runs (GET /v1/coverage-runs/{a}/compare/{b}): a waterfall
// from run A's open pipeline to run B's — won, lost, left, entered, changed — for a
// rep, a team or the reps' total, clickable down to the deals of each step; and an
// "Export CSV" button on each of its tables (trends.js has the export).
//
// It uses dashboard.js's helpers (api, state, cents, formatScaled, …) and listens to
// its "run-shown" and "row-selected" events: run B is the run on screen, run A by
// default the latest run of the period generated a week or more before it. Sums are
// done in integer cents, so a step's deals add up to the step exactly.
"use strict";

const STEPS = ["won", "lost", "left", "entered", "changed"];
const STEP_LABEL = { start: "Start", won: "Won", lost: "Lost", left: "Left", entered: "Entered", changed: "Changed", end: "End" };
const STEP_HELP = {
  won: "open in A, won in B", lost: "open in A, lost in B",
  left: "open in A, gone from this row in B (slipped out of the period, reassigned, deleted, …)",
  entered: "open in B, not in A (new, pulled in, reassigned in, …)", changed: "open in both: the amount moved",
};
const STEP_COLOR = { start: INK, end: INK, won: COLORS.healthy, lost: COLORS.short, left: COLORS.watch, entered: "#3b5bdb", changed: "#868e96" };
// Steps that take the open amount down (their amounts are A's, SPEC.md §11).
const DOWN = new Set(["won", "lost", "left"]);
const WEEK_MS = 7 * 86_400_000;
// The coverage the card shows at each end: the run table's (the server's words).
const BASIS = "coverage of remaining quota";
const TOTAL = "total";

const moved = {
  runA: null, // the two runs' ids
  runB: null,
  result: null, // the comparison's rows
  deals: null, // every step's deals, fetched on the first click
  who: TOTAL, // TOTAL (the reps added up) or a row key
  step: null, // the step whose deals are listed
  request: 0,
};

// --- which runs, which row ------------------------------------------------------------------

/** Whether two runs measure the same thing, as the server's comparison requires
 *  (docs/movement.md, "Which runs compare"): the period's runs may mix them. */
function sameShape(a, b) {
  const p = a.parameters;
  const q = b.parameters;
  return Boolean(p.by_pipeline) === Boolean(q.by_pipeline) && Boolean(p.rollup) === Boolean(q.rollup)
    && (p.target_match || "exact") === (q.target_match || "exact")
    && (p.pipeline_id || null) === (q.pipeline_id || null) && (p.currency || null) === (q.currency || null);
}

/** The day a run speaks for: its as_of (a run stored before as_of was kept: the day
 *  it was generated). */
function runDay(run) {
  return run.parameters.as_of || run.generated_at.slice(0, 10);
}

/** Whether run `a` is earlier than run `b`: by the day it is as of, then by when it was
 *  generated (runs back-filled today are still as of their own days). */
function earlierRun(a, b) {
  return runDay(a) < runDay(b) || (runDay(a) === runDay(b) && new Date(a.generated_at) < new Date(b.generated_at));
}

/** The run a week before `run` by the day each is as of: the latest as of 7 days or more
 *  earlier; else the earliest one before it; among the period's runs of the same shape. */
function weekBefore(run) {
  const day = Date.parse(runDay(run));
  const earlier = state.runs
    .filter((r) => r.run_id !== run.run_id && sameShape(r, run) && earlierRun(r, run))
    .sort((a, b) => (earlierRun(a, b) ? 1 : earlierRun(b, a) ? -1 : 0));
  return earlier.find((r) => day - Date.parse(runDay(r)) >= WEEK_MS)
    || earlier[earlier.length - 1] || null;
}

function runOption(run) {
  const option = document.createElement("option");
  option.value = run.run_id;
  option.textContent = `${when(run.generated_at)}${run.parameters.as_of ? ` · as of ${run.parameters.as_of}` : ""}`;
  return option;
}

function movementRows() {
  return moved.result ? moved.result.rows : [];
}

function rowOf(key) {
  return movementRows().find((row) => rowKey(row) === key) || null;
}

function whoLabel(key) {
  if (key === TOTAL) return "All reps (total)";
  const row = rowOf(key);
  return row ? `${rowLabel(row)}${row.principal_type === "GROUP" ? " (team)" : ""}` : key;
}

/** The steps of the chosen row, or of the reps' rows added up: cents and counts. */
function figures() {
  const rows = moved.who === TOTAL ? movementRows().filter((row) => row.principal_type === "USER")
    : [rowOf(moved.who)].filter(Boolean);
  const sum = { start: 0n, end: 0n };
  const count = {};
  for (const step of STEPS) { sum[step] = 0n; count[step] = 0; }
  for (const row of rows) {
    sum.start += cents(row.start_amount);
    sum.end += cents(row.end_amount);
    for (const step of STEPS) {
      sum[step] += cents(row[`${step}_amount`]);
      count[step] += row[`${step}_count`];
    }
  }
  return { sum, count, rows };
}

/** One end's coverage of the remaining quota, as the server judged it (the run table's
 *  basis): the reps' total of that run, or the row's; a pill in its band's colour, or
 *  the words of its status; a dash for a run without the row. */
function endCoverage(side) {
  const end = moved.who === TOTAL ? moved.result.totals[side] : rowOf(moved.who);
  const status = end ? (moved.who === TOTAL ? end.status : end[`${side}_status`]) : null;
  const ratio = end ? end[moved.who === TOTAL ? "remaining_coverage_ratio" : `${side}_remaining_coverage_ratio`] : null;
  const band = end ? (moved.who === TOTAL ? end.band : end[`${side}_band`]) : null;
  let shown;
  if (status === "coverage" && ratio !== null) shown = pill(formatValue(state.metrics.get("remaining_coverage_ratio"), ratio), band);
  else if (STATUS_PILL[status]) shown = pill(...STATUS_PILL[status]);
  else shown = Object.assign(document.createElement("span"), { textContent: "—" });
  shown.dataset.side = side;
  shown.dataset.status = status || "";
  return shown;
}

// --- drawing ----------------------------------------------------------------------------------

function buildCard() {
  const card = $("movement-card");
  card.innerHTML = "";
  const head = document.createElement("div");
  head.className = "table-head";
  head.append(Object.assign(document.createElement("h2"), { id: "movement-title", textContent: "What moved between two runs" }));
  const form = Object.assign(document.createElement("form"), { id: "movement-form", className: "toolbar" });
  const labelled = (text, id) => {
    const label = document.createElement("label");
    label.append(text, Object.assign(document.createElement("select"), { id }));
    return label;
  };
  form.append(labelled("From run (A)", "movement-from"), labelled("To run (B)", "movement-to"), labelled("Who", "movement-who"));
  form.addEventListener("submit", (event) => event.preventDefault());
  const summary = Object.assign(document.createElement("p"), { id: "movement-summary", className: "movement-summary" });
  summary.setAttribute("aria-live", "polite");
  const error = Object.assign(document.createElement("p"), { id: "movement-error", className: "error" });
  error.setAttribute("role", "alert");
  const note = Object.assign(document.createElement("p"), {
    className: "note",
    textContent: "From run A's open pipeline to run B's: deals won, lost, gone (left), come in (entered) and re-valued (changed). Click a bar or a step for its deals.",
  });
  const box = Object.assign(document.createElement("div"), { className: "chart-box" });
  const canvas = Object.assign(document.createElement("canvas"), { id: "movement-chart" });
  canvas.setAttribute("role", "img");
  canvas.setAttribute("aria-label", "Waterfall from run A's open pipeline to run B's; the steps table below has the same numbers");
  box.append(canvas);
  const steps = document.createElement("table");
  steps.id = "movement-steps";
  steps.innerHTML = "<thead><tr><th scope=\"col\">Step</th><th scope=\"col\">What</th><th scope=\"col\" class=\"num\">Deals</th><th scope=\"col\" class=\"num\">Effect on open</th></tr></thead><tbody></tbody>";
  const dealsBox = Object.assign(document.createElement("div"), { id: "movement-deals-box", hidden: true });
  const dealsHead = document.createElement("div");
  dealsHead.className = "table-head";
  dealsHead.append(Object.assign(document.createElement("h3"), { id: "movement-deals-title", tabIndex: -1 }));
  const dealsTotal = Object.assign(document.createElement("p"), { id: "movement-deals-total", className: "note" });
  const scroll = Object.assign(document.createElement("div"), { className: "table-scroll" });
  const deals = document.createElement("table");
  deals.id = "movement-deals";
  deals.innerHTML = "<thead><tr><th scope=\"col\">Deal</th><th scope=\"col\">Why</th>"
    + "<th scope=\"col\" class=\"num\">Effect</th><th scope=\"col\">In run A</th><th scope=\"col\">In run B</th>"
    + "<th scope=\"col\">Now <small>(the CRM today)</small></th></tr></thead><tbody></tbody>";
  scroll.append(deals);
  dealsBox.append(dealsHead, dealsTotal, scroll);
  card.append(head, form, summary, error, note, box, steps, dealsBox);
  $("movement-from").addEventListener("change", () => compare($("movement-from").value, moved.runB));
  $("movement-to").addEventListener("change", () => compare(moved.runA, $("movement-to").value));
  $("movement-who").addEventListener("change", () => { moved.who = $("movement-who").value; moved.step = null; draw(); });
  // The dashboard's CSV export (trends.js), for this card's two tables.
  head.append(exportButton("movement-steps", exportTable("movement-steps", "movement-steps")));
  dealsHead.append(exportButton("movement-deals", exportTable("movement-deals", "movement-deals")));
}

function drawWho() {
  const select = $("movement-who");
  const rows = [...movementRows()].sort((a, b) => a.principal_type.localeCompare(b.principal_type) || byName(a, b));
  const options = [{ value: TOTAL, text: whoLabel(TOTAL) }, ...rows.map((row) => ({ value: rowKey(row), text: whoLabel(rowKey(row)) }))];
  select.replaceChildren(...options.map(({ value, text }) => Object.assign(document.createElement("option"), { value, textContent: text })));
  if (!options.some((option) => option.value === moved.who)) moved.who = TOTAL;
  select.value = moved.who;
}

function signedText(value) {
  return (value > 0n ? "+" : "") + formatScaled(value, 2);
}

/** A step's effect on the open amount: down for won, lost and left; as is otherwise. */
function effect(step, amount) {
  return DOWN.has(step) ? -amount : amount;
}

function draw() {
  if (!moved.result) return;
  drawWho();
  const { sum, count } = figures();
  const unit = currency() ? ` ${currency()}` : "";
  const who = whoLabel(moved.who);
  $("movement-summary").replaceChildren(`${who}: ${BASIS} `, endCoverage("start"), " → ", endCoverage("end"),
    ` · open ${formatScaled(sum.start, 2)}${unit} → ${formatScaled(sum.end, 2)}${unit} (${signedText(sum.end - sum.start)})`);
  // The waterfall: floating bars from the running total before each step to after it.
  const labels = ["start", ...STEPS, "end"];
  const bars = [];
  let running = sum.start;
  bars.push([0, Number(sum.start) / 100]);
  for (const step of STEPS) {
    const next = running + effect(step, sum[step]);
    bars.push([Number(running) / 100, Number(next) / 100]);
    running = next;
  }
  bars.push([0, Number(sum.end) / 100]);
  const texts = labels.map((step) => (step === "start" || step === "end" ? formatScaled(sum[step], 2)
    : sum[step] === 0n ? "" : signedText(effect(step, sum[step]))));
  const data = {
    labels: labels.map((step) => STEP_LABEL[step] + (STEPS.includes(step) ? ` (${count[step]})` : "")),
    datasets: [{
      label: "Open pipeline", data: bars, maxBarThickness: 70,
      backgroundColor: labels.map((step) => STEP_COLOR[step]),
    }],
  };
  if (window.movementChart) window.movementChart.destroy();
  window.movementChart = new Chart($("movement-chart"), {
    type: "bar", data, plugins: [barTexts(texts)],
    options: {
      maintainAspectRatio: false, animation: false,
      plugins: {
        legend: { display: false },
        tooltip: { callbacks: { label: (item) => `${texts[item.dataIndex]}${unit}` } },
      },
      scales: { y: { beginAtZero: true, ticks: { callback: (value) => grouped(String(value)) } } },
      onClick: (_event, elements) => {
        if (!elements.length) return;
        const step = labels[elements[0].index];
        if (STEPS.includes(step)) openStep(step);
      },
      onHover: (event, elements) => {
        event.native.target.classList.toggle("clickable", elements.length > 0);
      },
    },
  });
  const tbody = $("movement-steps").querySelector("tbody");
  tbody.replaceChildren(...labels.map((step) => {
    const tr = document.createElement("tr");
    tr.dataset.step = step;
    const amount = step === "start" || step === "end" ? formatScaled(sum[step], 2) : signedText(effect(step, sum[step]));
    const cells = [STEP_LABEL[step], step === "start" ? "run A's open pipeline" : step === "end" ? "run B's open pipeline" : STEP_HELP[step],
      STEPS.includes(step) ? String(count[step]) : "", amount];
    cells.forEach((text, index) => {
      const td = document.createElement(index === 0 ? "th" : "td");
      td.textContent = text;
      if (index >= 2) td.className = "num";
      tr.append(td);
    });
    if (STEPS.includes(step)) {
      tr.tabIndex = 0;
      tr.classList.add("clickable");
      tr.classList.toggle("selected", step === moved.step);
      tr.addEventListener("click", () => openStep(step));
      tr.addEventListener("keydown", (event) => { if (event.key === "Enter" || event.key === " ") { event.preventDefault(); openStep(step); } });
    }
    return tr;
  }));
  if (moved.step) openStep(moved.step);
  else $("movement-deals-box").hidden = true;
}

function stateText(view) {
  if (!view) return "—";
  const amount = view.amount === null ? "no rate" : formatMoney(view.amount);
  return [amount, view.placed_on || "no date", view.stage_name, view.owner_name || "no owner"].join(" · ");
}

function nowText(now) {
  if (!now) return "";
  if (!now.exists) return "deleted";
  const amount = now.native_amount === null ? "no amount" : `${formatMoney(now.native_amount)} ${now.currency || ""}`.trim();
  return [amount, now.placed_on || "no date", now.stage_name, now.pipeline_name, now.owner_name || "no owner"].join(" · ");
}

const REASON_TEXT = {
  OUT_OF_SCOPE: "out of the run's scope (period, pipeline)", DELETED: "deleted", REASSIGNED: "reassigned",
  PIPELINE_CHANGED: "pipeline changed", UNDATED: "no date", NO_RATE: "no exchange rate", REOPENED: "reopened",
};

async function openStep(step) {
  moved.step = step;
  for (const tr of $("movement-steps").querySelectorAll("tbody tr")) tr.classList.toggle("selected", tr.dataset.step === step);
  const box = $("movement-deals-box");
  box.hidden = false;
  box.dataset.step = step;
  box.dataset.loaded = "";
  $("movement-deals-title").textContent = `${STEP_LABEL[step]}: the deals of ${whoLabel(moved.who)}`;
  const request = ++moved.request;
  if (moved.deals === null) {
    $("movement-deals-total").textContent = "Loading deals…";
    try {
      const result = await api(`/v1/coverage-runs/${moved.runA}/compare/${moved.runB}?deals=true`);
      if (request !== moved.request) return;
      moved.deals = result.deals;
    } catch (error) {
      $("movement-deals-total").textContent = `Could not load the deals: ${error.message}`;
      return;
    }
  }
  const rows = figures().rows;
  const keys = new Set(rows.map(rowKey));
  const deals = moved.deals.filter((deal) => deal.step === step && keys.has(rowKey(deal)));
  let total = 0n;
  for (const deal of deals) total += cents(deal.movement_amount);
  const { sum } = figures();
  const expected = effect(step, sum[step]);
  const unit = currency() ? ` ${currency()}` : "";
  $("movement-deals-total").textContent = `${deals.length} deal${deals.length === 1 ? "" : "s"}, `
    + `${signedText(total)}${unit}${total === expected ? " = the step" : ` ≠ the step (${signedText(expected)})`}`
    + (step === "changed" ? " · deals open in both with the same amount add nothing and are not listed" : "");
  const tbody = $("movement-deals").querySelector("tbody");
  tbody.replaceChildren(...deals.slice(0, DEALS_SHOWN).map((deal) => {
    const tr = document.createElement("tr");
    const who = moved.who === TOTAL ? ` · ${principalName(rowOf(rowKey(deal)) || deal)}` : "";
    const cells = [deal.deal_name + who, deal.reason ? REASON_TEXT[deal.reason] || deal.reason : "",
      signedText(cents(deal.movement_amount)), stateText(deal.a), stateText(deal.b), nowText(deal.now)];
    cells.forEach((text, index) => {
      const td = document.createElement("td");
      td.textContent = text;
      if (index === 2) {
        td.className = "num";
        td.dataset.cents = cents(deal.movement_amount).toString();
      }
      tr.append(td);
    });
    return tr;
  }));
  box.dataset.loaded = "true";
}

// --- loading ------------------------------------------------------------------------------------

async function compare(runA, runB) {
  moved.runA = runA;
  moved.runB = runB;
  moved.result = null;
  moved.deals = null;
  moved.step = null;
  $("movement-error").textContent = "";
  $("movement-deals-box").hidden = true;
  const request = ++moved.request;
  try {
    const result = await api(`/v1/coverage-runs/${runA}/compare/${runB}`);
    if (request !== moved.request) return;
    moved.result = result;
    draw();
    $("movement-card").dataset.loaded = `${runA}:${runB}`;
  } catch (error) {
    $("movement-error").textContent = error.message;
  }
}

function onRunShown(result) {
  const card = $("movement-card");
  if (!result) { card.hidden = true; return; }
  const runB = state.runs.find((run) => run.run_id === result.run.run_id) || result.run;
  const runA = weekBefore(runB);
  card.hidden = false;
  delete card.dataset.loaded;
  const alike = state.runs.filter((run) => sameShape(run, runB));
  $("movement-from").replaceChildren(...alike.filter((run) => run.run_id !== runB.run_id).map(runOption));
  $("movement-to").replaceChildren(...alike.map(runOption));
  $("movement-to").value = runB.run_id;
  if (!runA) {
    moved.result = null;
    $("movement-summary").textContent = "This is the period's first run of its kind: there is nothing earlier to compare it with.";
    $("movement-steps").querySelector("tbody").replaceChildren();
    $("movement-deals-box").hidden = true;
    if (window.movementChart) { window.movementChart.destroy(); window.movementChart = null; }
    return;
  }
  $("movement-from").value = runA.run_id;
  compare(runA.run_id, runB.run_id);
}

document.addEventListener("DOMContentLoaded", () => {
  buildCard();
  document.addEventListener("run-shown", (event) => onRunShown(event.detail));
  document.addEventListener("row-selected", (event) => {
    if (!moved.result) return;
    moved.who = rowKey(event.detail);
    moved.step = null;
    draw();
  });
});
