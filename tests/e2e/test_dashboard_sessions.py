"""Signing out leaves nothing of the session behind, in a real browser (Chromium).

Tenant A's analyst signs in, browses (a period, a team's deals and trend, what moved
between two runs and a step's deals), and signs out; tenant B's signs in on the same
page. None of A's names, ids or runs may be anywhere in the page then: its text and
attributes, its form values, the scripts' state, the charts' data, the browser's
storage or the URL.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import psycopg
import pytest

from pipeline_coverage import run_pipeline_coverage_batch
from pipeline_coverage.apikeys import create_api_key
from pipeline_coverage.periods import quarter_of
from tests.e2e.test_dashboard import VIEWPORT, browser, wait_for_run
from tests.factory import Crm

pytestmark = pytest.mark.slow
__all__ = ["browser"]  # the fixture, shared with the dashboard's tests

#: Everything the page holds, as text: its DOM (text and attributes), the values of its
#: form fields, the scripts' state (dashboard.js's `state`, movement.js's `moved`), the
#: charts' data, localStorage, sessionStorage and the URL.
PAGE_CONTENTS = """() => {
  const json = (value) => JSON.stringify(value, (_key, item) =>
    item instanceof Map ? [...item] : typeof item === "bigint" ? String(item) : item);
  const charts = ["coverageChart", "noTargetChart", "trendChart", "samePointChart", "movementChart"]
    .map((name) => window[name] ? json({ labels: window[name].data.labels,
      data: window[name].data.datasets.map((set) => set.data) }) : "");
  const storage = (store) => [...Array(store.length).keys()]
    .map((index) => store.key(index) + "=" + store.getItem(store.key(index)));
  return {
    dom: document.documentElement.outerHTML,
    values: [...document.querySelectorAll("input, select, textarea")].map((field) => field.value),
    state: json(typeof state === "undefined" ? null : state),
    moved: json(typeof moved === "undefined" ? null : moved),
    charts,
    local: storage(window.localStorage),
    session: storage(window.sessionStorage),
    url: window.location.href,
  };
}"""


def tenant(
    conn: psycopg.Connection[Any], name: str, prefix: str, reps: int, runs: int
) -> tuple[uuid.UUID, list[str], list[uuid.UUID]]:
    """A tenant with ``reps`` reps in a team, their deals and targets this quarter, and
    ``runs`` batch runs a week apart; its id, the names and ids that are its own, and
    its runs (oldest first)."""
    crm = Crm(conn)
    tenant_id = crm.tenant(name)
    start, end = quarter_of(dt.date.today())
    late = end - dt.timedelta(days=1)
    team = crm.group(tenant_id, f"{prefix} Team")
    pipeline = crm.pipeline(tenant_id, f"{prefix} Pipeline")
    stage = crm.stage(tenant_id, pipeline, name=f"{prefix} Stage")
    names = [name, f"{prefix} Team", f"{prefix} Pipeline", f"{prefix} Stage"]
    ids = [tenant_id, team, pipeline, stage]
    deals = []
    for n in range(reps):
        rep_name = f"{prefix} Rep {n}"
        rep = crm.user(tenant_id, rep_name)
        crm.member(tenant_id, team, rep)
        crm.target(tenant_id, "USER", rep, start, end, "1000.00")
        deals.append(crm.deal(tenant_id, pipeline, stage, f"{700 + n}.00", late, owner=rep,
                              owner_group=team))  # fmt: skip
        names.append(rep_name)
        ids.append(rep)
    crm.target(tenant_id, "GROUP", team, start, end, "5000.00")
    for n, deal in enumerate(deals):
        conn.execute(
            "UPDATE dyno_crm.deal SET name = %s WHERE tenant_id = %s AND id = %s",
            (f"{prefix} Deal {n}", tenant_id, deal),
        )
        names.append(f"{prefix} Deal {n}")
    conn.commit()
    made = []
    for n in range(runs):
        if n:  # something moved between the runs: a deal grew
            conn.execute(
                "UPDATE dyno_crm.deal SET amount = amount + 100 WHERE tenant_id = %s AND id = %s",
                (tenant_id, deals[0]),
            )
            conn.commit()
        run = run_pipeline_coverage_batch(conn, tenant_id, start, end, as_of=dt.date.today())
        conn.execute(
            "UPDATE dyno_crm.report_run SET generated_at = generated_at"
            " - make_interval(days => %s) WHERE tenant_id = %s AND id = %s",
            (8 * (runs - 1 - n), tenant_id, run),
        )
        conn.commit()
        made.append(run)
    return tenant_id, names + [str(i) for i in ids + made], made


def test_nothing_of_a_session_remains_after_signing_out(
    browser: Any, live_server: str, conn: psycopg.Connection[Any]
) -> None:
    a, a_own, a_runs = tenant(conn, "Alphaco Holdings", "Alphaco", reps=6, runs=2)
    b, b_own, [b_run] = tenant(conn, "Bravoco Limited", "Bravoco", reps=2, runs=1)
    _, key_a = create_api_key(conn, a, "browser test")
    _, key_b = create_api_key(conn, b, "browser test")

    page = browser.new_page(viewport=VIEWPORT)
    page.goto(f"{live_server}/")
    page.fill("#api-key", key_a)
    page.click("#login-form button[type=submit]")
    wait_for_run(page, a_runs[-1])
    # Open a period: the quarter before (no run), then this one again.
    page.click("#previous-quarter")
    page.wait_for_selector("#run-header.empty")
    page.click("#next-quarter")
    wait_for_run(page, a_runs[-1])
    # A team: its deals, its trend, and what moved for it between the two runs.
    page.wait_for_function(
        "ids => document.getElementById('movement-card').dataset.loaded === ids",
        arg=f"{a_runs[0]}:{a_runs[1]}",
    )
    page.click("#tab-GROUP")
    page.click("#coverage-table tbody tr:has-text('Alphaco Team')")
    page.wait_for_selector("#deals-card[data-loaded='true']")
    page.wait_for_function("() => window.samePointChart && window.trendChart")
    page.wait_for_function(
        "() => document.getElementById('movement-who').value.startsWith('GROUP:')"
    )
    page.click("#movement-steps tbody tr[data-step='changed']")
    page.wait_for_selector("#movement-deals-box[data-loaded='true']")
    seen = page.evaluate(PAGE_CONTENTS)
    assert "Alphaco Deal 0" in seen["dom"]  # A's deals were on the page
    assert "Alphaco Rep 5" in seen["moved"]

    page.click("#sign-out")
    page.wait_for_selector("#login:not([hidden])")
    page.fill("#api-key", key_b)
    page.click("#login-form button[type=submit]")
    wait_for_run(page, b_run)
    page.wait_for_selector("#movement-card:not([hidden])")
    page.wait_for_timeout(300)  # any answer still on its way for A's session

    now = page.evaluate(PAGE_CONTENTS)
    assert "Bravoco Limited" in now["dom"]  # B's, as a check that the page was read
    assert "Bravoco Limited" in now["state"]
    texts = {
        "DOM": now["dom"],
        "form values": "\n".join(now["values"]),
        "dashboard.js state": now["state"],
        "movement.js state": now["moved"],
        "charts": "\n".join(now["charts"]),
        "localStorage": "\n".join(now["local"]),
        "sessionStorage": "\n".join(now["session"]),
        "URL": now["url"],
    }
    left = {
        where: sorted(own for own in a_own if own in text)
        for where, text in texts.items()
        if any(own in text for own in a_own)
    }
    assert left == {}, f"tenant A's names or ids remain after signing out: {left}"
    assert key_a not in str(now)

    # A session that ends on the server (here: its cookie is gone) ends the same way,
    # and the sign-in form says why.
    page.context.clear_cookies()
    page.click("#previous-quarter")
    page.wait_for_selector("#login:not([hidden])")
    assert page.inner_text("#login-error") == "Your session has ended: sign in again."
    ended = page.evaluate(PAGE_CONTENTS)
    assert not [own for own in b_own if own in str(ended)]
    assert ended["session"] == []  # the message was read once


def test_a_tab_shows_nothing_of_a_session_another_tab_replaced(
    browser: Any, live_server: str, conn: psycopg.Connection[Any]
) -> None:
    """Two tabs share the browser's cookie: when one signs in as another tenant, the
    other, still showing the first tenant, is loaded afresh (on the new session)."""
    a, a_own, [a_run] = tenant(conn, "Alphaco Holdings", "Alphaco", reps=3, runs=1)
    b, _, [b_run] = tenant(conn, "Bravoco Limited", "Bravoco", reps=2, runs=1)
    _, key_a = create_api_key(conn, a, "browser test")
    _, key_b = create_api_key(conn, b, "browser test")

    context = browser.new_context(viewport=VIEWPORT)
    first, second = context.new_page(), context.new_page()
    first.goto(f"{live_server}/")
    first.fill("#api-key", key_a)
    first.click("#login-form button[type=submit]")
    wait_for_run(first, a_run)
    assert "Alphaco Rep 2" in first.evaluate(PAGE_CONTENTS)["dom"]

    second.goto(f"{live_server}/")  # signed in as A already: it signs out, then in as B
    wait_for_run(second, a_run)
    second.click("#sign-out")
    second.wait_for_selector("#login:not([hidden])")
    second.fill("#api-key", key_b)
    second.click("#login-form button[type=submit]")
    wait_for_run(second, b_run)

    first.wait_for_selector("#login:not([hidden])")  # the first tab ended A's page
    now = first.evaluate(PAGE_CONTENTS)
    left = sorted(own for own in a_own if own in str(now))
    assert left == [], f"tenant A's names or ids remain in the other tab: {left}"
    context.close()
