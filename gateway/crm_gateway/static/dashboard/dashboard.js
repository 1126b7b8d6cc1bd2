// The dashboard: a client of the gateway's public API, signed in by the HttpOnly session cookie (GET only).
// Every figure comes from an endpoint as it answers; this script only lays them out. Text is set with
// textContent (never HTML), so nothing a customer typed can run here.

const LADDER = ["prospect", "lead", "qualified_lead", "opportunity", "customer", "repeat_customer", "loyal"];
const LOYALTY_TYPES = ["super_value", "incentive", "monopoly", "inertia", "price"];
const CHURN_RISKS = ["low", "medium", "high"];
const CLV_BUCKETS = ["0", "0-100", "100-1000", "1000-10000", "10000-100000", "100000+"];
const ACCENT = "#2f6f9f";

class SignedOut extends Error {}

/** GET an API path as JSON; a 401 (no session, or it expired) sends the person to the sign-in page. */
async function api(path) {
  const response = await fetch(path, { credentials: "same-origin", headers: { Accept: "application/json" } });
  if (response.status === 401) {
    window.location.assign("/dashboard/login");
    throw new SignedOut(path);
  }
  if (!response.ok) {
    const answer = await response.json().catch(() => ({}));
    throw new Error(`${path}: ${response.status} ${answer.error?.message ?? ""}`);
  }
  return response.json();
}

function element(tag, text, className) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  if (className) node.className = className;
  return node;
}

function row(cells, numeric = []) {
  const tr = document.createElement("tr");
  cells.forEach((cell, i) => {
    const td = document.createElement("td");
    if (cell instanceof Node) td.append(cell);
    else td.textContent = String(cell ?? "");
    if (numeric.includes(i)) td.className = "number";
    tr.append(td);
  });
  return tr;
}

function label(name) {
  return String(name ?? "—").replaceAll("_", " ");
}

function percent(share) {
  return share === null || share === undefined ? "" : `${(Number(share) * 100).toFixed(1)} %`;
}

/** An RFC 3339 instant as "2026-11-30 04:49 UTC" (the API's instants are UTC). */
function when(instant) {
  return instant ? `${instant.slice(0, 10)} ${instant.slice(11, 16)} UTC` : "—";
}

function money(amount) {
  return amount === null || amount === undefined ? "—" : Number(amount).toLocaleString("en", {
    minimumFractionDigits: 2, maximumFractionDigits: 2 });
}

function showProblem(error) {
  if (error instanceof SignedOut) return;
  const status = document.getElementById("status");
  status.textContent = `Could not load: ${error.message}`;
  status.hidden = false;
}

function barChart(canvas, labels, datasets, horizontal = false) {
  return new window.Chart(canvas, {
    type: "bar",
    data: { labels, datasets },
    options: {
      indexAxis: horizontal ? "y" : "x",
      animation: false,
      maintainAspectRatio: false,
      plugins: { legend: { display: datasets.length > 1 } },
      scales: { [horizontal ? "x" : "y"]: { beginAtZero: true, ticks: { precision: 0 } } },
    },
  });
}

// --- the funnel ------------------------------------------------------------------------------------

async function showFunnel() {
  const report = await api("/v1/reports/funnel");
  const all = report.rows.filter((r) => r.entry_month === "all");
  const byStage = new Map(all.map((r) => [r.stage, r]));
  const stages = LADDER.filter((stage) => byStage.has(stage));
  const body = document.querySelector("#funnel tbody");
  body.replaceChildren(...stages.map((stage) => {
    const tr = row([label(stage), byStage.get(stage).customers, percent(byStage.get(stage).conversion)], [1, 2]);
    tr.dataset.stage = stage;
    return tr;
  }));
  barChart(document.getElementById("funnel-chart"), stages.map(label),
    [{ label: "customers", data: stages.map((s) => byStage.get(s).customers), backgroundColor: ACCENT }], true);
}

// --- the base by its analytics: CLV distribution, RFM grid, loyalty type by churn risk ----------------

function cells(report, measure) {
  const found = new Map();
  for (const r of report.rows.filter((r) => r.measure === measure)) found.set(`${r.row}|${r.column}`, r.customers);
  return found;
}

function heatTable(table, rows, columns, counts, rowLabel = label, columnLabel = label) {
  const max = Math.max(1, ...counts.values());
  const head = document.createElement("tr");
  head.append(element("th"), ...columns.map((c) => element("th", columnLabel(c))));
  const lines = rows.map((r) => {
    const tr = document.createElement("tr");
    tr.append(element("th", rowLabel(r)));
    for (const c of columns) {
      const n = counts.get(`${r}|${c}`) ?? 0;
      const td = element("td", n);
      td.dataset.cell = `${r}|${c}`;
      td.style.backgroundColor = `rgba(47, 111, 159, ${(0.08 + 0.7 * n / max).toFixed(2)})`;
      if (n / max > 0.55) td.style.color = "#fff";
      tr.append(td);
    }
    return tr;
  });
  table.replaceChildren(element("thead"), element("tbody"));
  table.tHead.append(head);
  table.tBodies[0].append(...lines);
}

async function showAnalytics() {
  const report = await api("/v1/reports/analytics");
  document.getElementById("model-as-of").textContent = report.as_of ? `analytics as of ${when(report.as_of)}` : "";

  const clv = cells(report, "clv_distribution");
  const currencies = [...new Set([...clv.keys()].map((key) => key.split("|")[1]))].sort();
  const buckets = CLV_BUCKETS.filter((b) => currencies.some((c) => clv.has(`${b}|${c}`)));
  document.querySelector("#clv tbody").replaceChildren(...buckets.flatMap((b) => currencies
    .filter((c) => clv.has(`${b}|${c}`)).map((c) => row([b, c, clv.get(`${b}|${c}`)], [2]))));
  barChart(document.getElementById("clv-chart"), buckets, currencies.map((c, i) => ({
    label: c, data: buckets.map((b) => clv.get(`${b}|${c}`) ?? 0),
    backgroundColor: [ACCENT, "#7aa974", "#d08c3a", "#9c6ab0"][i % 4] })));

  heatTable(document.getElementById("rfm-grid"), ["R5", "R4", "R3", "R2", "R1"], ["FM1", "FM2", "FM3", "FM4", "FM5"],
    cells(report, "rfm_grid"), (r) => r, (c) => c);
  heatTable(document.getElementById("loyalty-matrix"), LOYALTY_TYPES, CHURN_RISKS,
    cells(report, "loyalty_by_churn_risk"));
}

// --- customers at risk -----------------------------------------------------------------------------

async function showChurnList() {
  const page = await api("/v1/analytics/customers?churn_risk=high&page_size=15");
  document.querySelector("#churn-list tbody").replaceChildren(...page.items.map((item) => {
    const open = element("button", item.name ?? item.email ?? item.customer_id, "link");
    open.type = "button";
    open.addEventListener("click", () => showCustomer(item.customer_id).catch(showProblem));
    const tr = row([open, label(item.lifecycle_stage), money(item.migration_clv), money(item.historic_value),
      label(item.rfm_segment), label(item.loyalty_type)], [2, 3]);
    tr.dataset.customer = item.customer_id;
    return tr;
  }));
}

// --- one customer's 360 view -----------------------------------------------------------------------

async function search(query) {
  const page = await api(`/v1/customers?q=${encodeURIComponent(query)}&page_size=10`);
  const list = document.getElementById("search-results");
  list.replaceChildren(...page.items.map((item) => {
    const li = element("li");
    const pick = element("button", `${item.name ?? "(no name)"} · ${item.email ?? ""}`, "link");
    pick.type = "button";
    pick.dataset.customer = item.customer_id;
    pick.addEventListener("click", () => showCustomer(item.customer_id).catch(showProblem));
    li.append(pick, element("span", ` ${label(item.lifecycle_stage)}`, "muted"));
    return li;
  }));
  if (!page.items.length) list.replaceChildren(element("li", "no customer found", "muted"));
}

function facts(view) {
  const a = view.analytics;
  const out = [
    ["lifecycle stage", label(view.lifecycle_stage)],
    ["relationship phase", label(view.relationship_phase)],
    ["registered", when(view.registered_at)],
    ["last activity", when(view.last_activity_at)],
    ["paid orders", view.paid_orders],
    ["satisfaction (CSI)", view.service?.satisfaction?.csi ?? "—"],
  ];
  if (a) {
    out.push(
      ["CLV, migration model", `${money(a.value.migration_clv)} ${a.currency}`],
      ["CLV, retention model", `${money(a.value.retention_clv)} ${a.currency}`],
      ["historic value", `${money(a.value.historic)} ${a.currency}`],
      ["RFM", a.rfm ? `${a.rfm.score} · ${label(a.rfm.segment)}` : "—"],
      ["loyalty type", `${label(a.loyalty.type)} (${a.loyalty.reason})`],
      ["churn risk", a.churn ? `${a.churn.risk} (${a.churn.score}): ${a.churn.reasons.join(", ") || "no rule"}` : "—"],
      ["analytics as of", when(a.as_of)],
    );
  }
  return out;
}

async function showCustomer(customerId) {
  const view = await api(`/v1/customers/${encodeURIComponent(customerId)}/360`);
  const panel = document.getElementById("customer-360");
  panel.dataset.customer = view.customer_id;
  document.getElementById("customer-name").textContent =
    `${view.profile?.name ?? "(no name)"} ${view.profile?.email ? `· ${view.profile.email}` : ""}`;
  document.getElementById("customer-facts").replaceChildren(...facts(view).flatMap(([name, value]) =>
    [element("dt", name), element("dd", value)]));
  document.getElementById("timeline-count").textContent =
    `the newest ${view.timeline.length} of ${view.timeline_total} events`;
  document.querySelector("#timeline tbody").replaceChildren(...view.timeline.map((entry) =>
    row([when(entry.occurred_at), entry.origin, entry.type, entry.summary])));
  panel.hidden = false;
  panel.scrollIntoView({ block: "nearest" });
}

// --- the page --------------------------------------------------------------------------------------

document.getElementById("search").addEventListener("submit", (event) => {
  event.preventDefault();
  search(document.getElementById("search-q").value.trim()).catch(showProblem);
});

document.getElementById("logout").addEventListener("click", async () => {
  await fetch("/dashboard/logout", { method: "POST", credentials: "same-origin" });
  window.location.assign("/dashboard/login");
});

async function start() {
  const session = await api("/dashboard/session");
  document.getElementById("signed-in-as").textContent = `signed in as ${session.user}`;
  const results = await Promise.allSettled([showFunnel(), showAnalytics(), showChurnList()]);
  results.filter((r) => r.status === "rejected").forEach((r) => showProblem(r.reason));
  document.body.dataset.loaded = "true";
}

start().catch(showProblem);
