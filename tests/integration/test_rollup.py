"""Teams as a forest and the roll-up run option (SPEC.md §7, §10): a hand-built org
whose every number is worked out below, the import of parent groups (cycles, other
tenants, parents later in the file), deleting a team, and the CLI and API surfaces.
The random-tenant comparison with the oracle is in test_metrics.py."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import psycopg
from click.testing import CliRunner

from pipeline_coverage import get_run, run_deals
from pipeline_coverage.apikeys import create_api_key
from pipeline_coverage.cli import cli, main
from pipeline_coverage.reports.coverage import coverage_request, run_coverage
from tests.factory import Crm
from tests.integration.test_loader import dump, fetch, load, reject, write_csv

Q1 = (dt.date(2026, 1, 1), dt.date(2026, 4, 1))
AS_OF = dt.date(2026, 1, 15)


@dataclass
class Org:
    """Region R over teams A and B; A1 under A. u1 in A, u2 in A1, u3 in B, u4 in none."""

    tenant: uuid.UUID
    region: uuid.UUID
    a: uuid.UUID
    a1: uuid.UUID
    b: uuid.UUID
    u1: uuid.UUID
    u2: uuid.UUID
    u3: uuid.UUID
    u4: uuid.UUID
    deals: dict[str, uuid.UUID]


def build_org(conn: psycopg.Connection[Any]) -> Org:
    crm = Crm(conn)
    tenant = crm.tenant("Org Co")
    region = crm.group(tenant, "Region")
    a = crm.group(tenant, "Team A", parent=region)
    b = crm.group(tenant, "Team B", parent=region)
    a1 = crm.group(tenant, "Team A1", parent=a)
    u1, u2, u3, u4 = (crm.user(tenant, f"Rep {n}") for n in range(1, 5))
    crm.member(tenant, a, u1)
    crm.member(tenant, a1, u2)
    crm.member(tenant, b, u3)
    pipeline = crm.pipeline(tenant)
    open_stage = crm.stage(tenant, pipeline, "IN_PROGRESS")
    won_stage = crm.stage(tenant, pipeline, "DONE_SUCCESS")
    day = dt.date(2026, 2, 1)
    deals = {
        "d1": crm.deal(tenant, pipeline, open_stage, Decimal(100), day, owner=u1),
        "d2": crm.deal(tenant, pipeline, open_stage, Decimal(40), day, owner=u2, owner_group=a),
        "d3": crm.deal(tenant, pipeline, open_stage, Decimal(50), day, owner_group=a1),
        "d4": crm.deal(tenant, pipeline, open_stage, Decimal(70), day, owner=u3, assignee=u1),
        "d5": crm.deal(tenant, pipeline, open_stage, Decimal(999), day, owner=u4),
        "d6": crm.deal(tenant, pipeline, won_stage, Decimal(200), None, day, owner=u2),
    }
    for who, kind, amount in (
        (region, "GROUP", 1000), (a, "GROUP", 600), (b, "GROUP", 300), (a1, "GROUP", 100),
        (u1, "USER", 200), (u2, "USER", 250),
    ):  # fmt: skip
        crm.target(tenant, kind, who, *Q1, Decimal(amount))
    conn.commit()
    return Org(tenant, region, a, a1, b, u1, u2, u3, u4, deals)


def batch(conn: psycopg.Connection[Any], org: Org, rollup: bool) -> Any:
    request = coverage_request(org.tenant, *Q1, as_of=AS_OF, rollup=rollup)
    return get_run(conn, run_coverage(conn, request).run_id)


def by_principal(run: Any) -> dict[uuid.UUID, Any]:
    return {row.principal_id: row for row in run.rows}


def test_a_rolled_up_team_counts_its_members_and_subteams(
    conn: psycopg.Connection[Any],
) -> None:
    org = build_org(conn)
    run = batch(conn, org, rollup=True)
    assert run.parameters["rollup"] is True
    rows = by_principal(run)
    # (open, won, target, member target), worked out from the org above:
    # R: d1 + d2 + d3 + d4 (all below it), d6 won by u2 of A1; members' targets A + B.
    # A: d1 (u1), d2 (stamped A), d3 (A1's), d4 (assignee u1), d6 (u2 of A1); u1 + A1.
    # A1: d2 (u2), d3 (stamped), d6 (u2); u2. B: d4 (u3); u3 has no target.
    expected = {
        org.region: ("260.00", "200.00", "1000.00", "900.00"),
        org.a: ("260.00", "200.00", "600.00", "300.00"),
        org.a1: ("90.00", "200.00", "100.00", "250.00"),
        org.b: ("70.00", "0.00", "300.00", None),
    }
    for group, (open_amount, won, target, member_target) in expected.items():
        row = rows[group]
        assert row["open_amount"] == Decimal(open_amount), row.principal_name
        assert row["won_amount"] == Decimal(won), row.principal_name
        assert row["target_amount"] == Decimal(target)
        wanted = None if member_target is None else Decimal(member_target)
        assert row["member_target_amount"] == wanted, row.principal_name
    assert rows[org.a]["remaining_target"] == Decimal(400)
    assert rows[org.a]["remaining_coverage_ratio"] == Decimal("0.6500")
    # Reps are the same with or without roll-up, and carry no member target.
    plain = by_principal(batch(conn, org, rollup=False))
    for user in (org.u1, org.u2, org.u3, org.u4):
        assert rows[user].values == plain[user].values
        assert rows[user]["member_target_amount"] is None
    # Without roll-up a team only has the deals stamped with it.
    assert plain[org.region]["open_amount"] == 0
    assert plain[org.a]["open_amount"] == Decimal(40)
    assert plain[org.a1]["open_amount"] == Decimal(50)
    assert plain[org.a]["member_target_amount"] is None

    reasons = {
        (deal.principal_id, deal.deal_id): deal.credit_reason
        for deal in run_deals(conn, run.run_id, org.tenant, principal_type="GROUP")
    }
    d = org.deals
    assert {k: v for k, v in reasons.items() if k[0] == org.a} == {
        (org.a, d["d1"]): "MEMBER",
        (org.a, d["d2"]): "OWNER_GROUP",
        (org.a, d["d3"]): "SUBGROUP",
        (org.a, d["d4"]): "MEMBER",
        (org.a, d["d6"]): "SUBGROUP",
    }
    assert {v for k, v in reasons.items() if k[0] == org.region} == {"SUBGROUP"}
    assert not any(deal_id == d["d5"] for _, deal_id in reasons)


def test_a_rolled_up_single_run_equals_its_batch_row(conn: psycopg.Connection[Any]) -> None:
    org = build_org(conn)
    rows = by_principal(batch(conn, org, rollup=True))
    for group in (org.region, org.a, org.a1, org.b):
        request = coverage_request(org.tenant, *Q1, "GROUP", group, as_of=AS_OF, rollup=True)
        run = get_run(conn, run_coverage(conn, request).run_id)
        [row] = run.rows
        assert row.values == rows[group].values
        singles = {(x.deal_id, x.credit_reason) for x in run_deals(conn, run.run_id)}
        assert len(singles) == (row["open_count"] or 0) + (row["won_count"] or 0)


def test_a_cycle_written_around_the_loader_does_not_hang_a_run(
    conn: psycopg.Connection[Any],
) -> None:
    org = build_org(conn)
    # The loader refuses this; a host CRM writing the table directly might not.
    conn.execute(
        "UPDATE dyno_crm.crm_group SET parent_group_id = %s WHERE tenant_id = %s AND id = %s",
        (org.a1, org.tenant, org.region),
    )
    conn.commit()
    rows = by_principal(batch(conn, org, rollup=True))
    # Every group of the cycle reaches every other once: each sees all four open deals
    # of the cycle's teams and members (d1-d4), never twice.
    for group in (org.region, org.a, org.a1):
        assert rows[group]["open_amount"] == Decimal(260)


def test_deleting_a_team_reattaches_its_children_to_its_parent(
    conn: psycopg.Connection[Any], db_url: str
) -> None:
    org = build_org(conn)
    conn.execute("SELECT dyno_crm.delete_crm_group(%s, %s)", (org.tenant, org.a))
    conn.commit()
    parents = dict(
        fetch(db_url, "SELECT id, parent_group_id FROM dyno_crm.crm_group WHERE tenant_id = %s",
              (org.tenant,))
    )  # fmt: skip
    assert parents == {org.region: None, org.b: org.region, org.a1: org.region}
    rows = by_principal(batch(conn, org, rollup=True))
    # A's stamp on d2 and u1's membership went with it: R keeps d2 (u2 is in A1, now
    # right under R), d3 (A1's) and d4 (u3 of B), and loses d1 (u1 is in no team now).
    assert rows[org.region]["open_amount"] == Decimal(160)
    assert rows[org.a1]["open_amount"] == Decimal(90)


# --- the import -----------------------------------------------------------------------

GROUPS = ("id", "tenant_id", "name", "parent_group_id")


def tenant_folder(data_dir: Path) -> tuple[str, str]:
    tenant, other = str(uuid.uuid4()), str(uuid.uuid4())
    write_csv(data_dir, "tenants.csv", ("id", "name"), [[tenant, "Acme"], [other, "Beta"]])
    return tenant, other


def test_parent_groups_load_in_any_order_and_reload_keeps_them(
    conn: psycopg.Connection[Any], db_url: str, data_dir: Path
) -> None:
    tenant, _ = tenant_folder(data_dir)
    region, team, sub = (str(uuid.uuid4()) for _ in range(3))
    # Children first: a parent later in the same file is fine.
    write_csv(data_dir, "groups.csv", GROUPS, [
        [sub, tenant, "Sub", team], [team, tenant, "Team", region], [region, tenant, "Region", ""],
    ])  # fmt: skip
    load(conn, data_dir)
    query = "SELECT id::text, parent_group_id::text FROM dyno_crm.crm_group ORDER BY name"
    expected = [(region, None), (sub, team), (team, region)]
    assert fetch(db_url, query) == expected
    # An old export without the column leaves the parents as they are.
    write_csv(data_dir, "groups.csv", GROUPS[:3], [[sub, tenant, "Sub"]])
    load(conn, data_dir)
    assert fetch(db_url, query) == expected


def test_bad_parent_groups_are_located_and_nothing_is_written(
    conn: psycopg.Connection[Any], db_url: str, data_dir: Path
) -> None:
    tenant, other = tenant_folder(data_dir)
    a, b, c, d, foreign = (str(uuid.uuid4()) for _ in range(5))
    write_csv(data_dir, "groups.csv", GROUPS, [[foreign, other, "Foreign", ""]])
    load(conn, data_dir)
    before = dump(db_url)
    write_csv(data_dir, "groups.csv", GROUPS, [
        [a, tenant, "A", a],
        [b, tenant, "B", foreign],
        [c, tenant, "C", str(uuid.uuid4())],
    ])  # fmt: skip
    problems = reject(conn, data_dir).problems
    assert problems == [
        "groups.csv:2: parent_group_id: a group cannot be its own parent",
    ]
    write_csv(data_dir, "groups.csv", GROUPS, [[b, tenant, "B", foreign], [c, tenant, "C", d]])
    problems = reject(conn, data_dir).problems
    assert problems == [
        f"groups.csv:2: parent_group_id: no parent group {foreign} in tenant {tenant}",
        f"groups.csv:3: parent_group_id: no parent group {d} in tenant {tenant}",
    ]
    # A cycle inside the file: each of its groups is named, with the cycle.
    write_csv(data_dir, "groups.csv", GROUPS, [
        [a, tenant, "A", b], [b, tenant, "B", c], [c, tenant, "C", a], [d, tenant, "D", a],
    ])  # fmt: skip
    problems = reject(conn, data_dir).problems
    assert problems == [
        f"groups.csv:2: parent_group_id: makes a cycle: {a} -> {b} -> {c} -> {a}",
        f"groups.csv:3: parent_group_id: makes a cycle: {b} -> {c} -> {a} -> {b}",
        f"groups.csv:4: parent_group_id: makes a cycle: {c} -> {a} -> {b} -> {c}",
    ]
    assert dump(db_url) == before


def test_a_cycle_through_groups_already_loaded_is_refused(
    conn: psycopg.Connection[Any], db_url: str, data_dir: Path
) -> None:
    tenant, _ = tenant_folder(data_dir)
    top, middle, low = (str(uuid.uuid4()) for _ in range(3))
    write_csv(data_dir, "groups.csv", GROUPS, [
        [top, tenant, "Top", ""], [middle, tenant, "Middle", top], [low, tenant, "Low", middle],
    ])  # fmt: skip
    load(conn, data_dir)
    before = dump(db_url)
    # Only the top group is in this file; the rest of the cycle is in the database.
    write_csv(data_dir, "groups.csv", GROUPS, [[top, tenant, "Top", low]])
    problems = reject(conn, data_dir).problems
    assert problems == [
        f"groups.csv:2: parent_group_id: makes a cycle: {top} -> {low} -> {middle} -> {top}"
    ]
    assert dump(db_url) == before


def test_an_unknown_currency_code_is_located(
    conn: psycopg.Connection[Any], db_url: str, data_dir: Path
) -> None:
    tenant = str(uuid.uuid4())
    header = ("id", "name", "currency")
    write_csv(data_dir, "tenants.csv", header, [[tenant, "Acme", "EUE"]])
    write_csv(
        data_dir,
        "exchange_rates.csv",
        ("tenant_id", "currency", "valid_from", "rate"),
        [[tenant, "XYZ", "2026-01-01", "1.1"], [tenant, "CHF", "2026-01-01", "1.1"]],
    )
    problems = reject(conn, data_dir).problems
    assert "tenants.csv:2: currency: not an ISO 4217 currency code: 'EUE'" in problems
    assert "exchange_rates.csv:2: currency: not an ISO 4217 currency code: 'XYZ'" in problems
    assert not any("exchange_rates.csv:3" in problem for problem in problems)
    write_csv(data_dir, "tenants.csv", header, [[tenant, "Acme", "EUR"]])
    write_csv(
        data_dir,
        "exchange_rates.csv",
        ("tenant_id", "currency", "valid_from", "rate"),
        [[tenant, "CHF", "2026-01-01", "1.1"]],
    )
    load(conn, data_dir)
    assert fetch(db_url, "SELECT currency FROM dyno_crm.tenant") == [("EUR",)]


# --- the surfaces ---------------------------------------------------------------------


def test_cli_run_rollup_by_name_shows_member_targets(
    conn: psycopg.Connection[Any], db_url: str
) -> None:
    org = build_org(conn)
    runner = CliRunner()
    args = ["--database-url", db_url, "run", "--tenant", "Org Co", "--period", "2026-Q1",
            "--all", "--rollup", "--as-of", AS_OF.isoformat()]  # fmt: skip
    result = runner.invoke(cli, [*args, "--format", "json"])
    assert result.exit_code == 0, result.output
    found = json.loads(result.output)
    assert found["run"]["parameters"]["rollup"] is True
    row = next(r for r in found["rows"] if r["principal_id"] == str(org.region))
    assert (row["open_amount"], row["member_target_amount"]) == ("260.00", "900.00")
    table = runner.invoke(cli, args, terminal_width=200)
    assert table.exit_code == 0, table.output
    assert "Member targets" in table.output
    assert "900.00" in table.output


def test_api_runs_take_rollup(conn: psycopg.Connection[Any], live_server: str) -> None:
    org = build_org(conn)
    _, key = create_api_key(conn, org.tenant)
    response = httpx.post(
        f"{live_server}/v1/coverage-runs",
        headers={"Authorization": f"Bearer {key}"},
        json={"period": "2026-Q1", "as_of": AS_OF.isoformat(), "rollup": True},
        timeout=30,
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["run"]["parameters"]["rollup"] is True
    row = next(r for r in body["rows"] if r["principal_id"] == str(org.a))
    assert (row["open_amount"], row["member_target_amount"]) == ("260.00", "300.00")
    for value in ("yes", 1):  # strict: a flag is true or false
        refused = httpx.post(
            f"{live_server}/v1/coverage-runs",
            headers={"Authorization": f"Bearer {key}"},
            json={"period": "2026-Q1", "rollup": value},
            timeout=30,
        )
        assert refused.status_code == 422, refused.text


def test_cli_lists_teams_with_their_parents_and_the_periods(
    conn: psycopg.Connection[Any], db_url: str
) -> None:
    org = build_org(conn)
    runner = CliRunner()
    base = ["--database-url", db_url]
    listed = runner.invoke(cli, [*base, "principals", "--tenant", "Org Co", "--type", "GROUP",
                                 "--format", "json"])  # fmt: skip
    assert listed.exit_code == 0, listed.output
    parents = {
        p["name"]: (p["parent_group_id"], p["parent_name"])
        for p in json.loads(listed.output)["principals"]
    }
    assert parents == {
        "Region": (None, None),
        "Team A": (str(org.region), "Region"),
        "Team B": (str(org.region), "Region"),
        "Team A1": (str(org.a), "Team A"),
    }
    table = runner.invoke(cli, [*base, "principals", "--tenant", "Org Co"], terminal_width=250)
    assert table.exit_code == 0, table.output
    assert "None" not in table.output

    batch(conn, org, rollup=True)
    found = runner.invoke(cli, [*base, "periods", "--tenant", "Org Co", "--format", "json"])
    assert found.exit_code == 0, found.output
    q1 = next(p for p in json.loads(found.output)["periods"] if p["period_start"] == "2026-01-01")
    assert (q1["name"], q1["period_end"], q1["targets"], q1["runs"]) == ("2026-Q1", "2026-04-01",
                                                                         6, 1)  # fmt: skip
    assert sum(p["current"] for p in json.loads(found.output)["periods"]) == 1
    assert main([*base, "periods", "--tenant", "Nobody"]) == 2  # (main maps the exit codes)


def test_a_new_user_loads_an_export_and_runs_a_fiscal_rolled_up_quarter_by_name(
    conn: psycopg.Connection[Any], db_url: str, data_dir: Path
) -> None:
    """The issue's acceptance case: an export of a tenant that sells in USD, EUR, GBP
    and JPY, has a fiscal year starting in July and teams under teams is loaded, its
    tenant is found by name, and `run --period FY2027-Q1 --all --rollup` matches the
    oracle in every column — no UUID typed anywhere."""
    from pipeline_coverage.importing.formats import TABLES, columns
    from tests.factory import random_tenant
    from tests.integration.test_metrics import compare_row
    from tests.oracle import Options, Oracle

    fiscal_q1 = (dt.date(2026, 7, 1), dt.date(2026, 10, 1))  # FY2027-Q1 from July
    tenant = random_tenant(conn, 31, period=fiscal_q1)
    conn.execute("UPDATE dyno_crm.tenant SET fiscal_year_start_month = 7 WHERE id = %s", (tenant,))
    # (A CRM's export names only principals it has: the random tenant's targets of a
    # principal that does not exist stay behind.)
    conn.execute(
        "DELETE FROM dyno_crm.sales_target AS st WHERE st.tenant_id = %s"
        " AND NOT EXISTS (SELECT 1 FROM dyno_crm.crm_user AS u"
        "                 WHERE u.tenant_id = st.tenant_id AND u.id = st.principal_id)"
        " AND NOT EXISTS (SELECT 1 FROM dyno_crm.crm_group AS g"
        "                 WHERE g.tenant_id = st.tenant_id AND g.id = st.principal_id)",
        (tenant,),
    )
    conn.commit()
    # The export: every import file, with every column, as a CRM would write it.
    for spec in TABLES:
        names = columns(spec.file, optional=True)
        key = "id" if spec.table == "tenant" else "tenant_id"
        with (data_dir / spec.file).open("wb") as out, conn.cursor() as cur:
            statement = psycopg.sql.SQL(
                "COPY (SELECT {} FROM {} WHERE {} = {} ORDER BY 1, 2) TO STDOUT WITH (FORMAT csv,"
                " HEADER)"
            ).format(
                psycopg.sql.SQL(", ").join(  # as text: booleans as true/false, not t/f
                    psycopg.sql.SQL("{}::text").format(psycopg.sql.Identifier(n)) for n in names
                ),
                psycopg.sql.Identifier("dyno_crm", spec.table),
                psycopg.sql.Identifier(key),
                psycopg.sql.Literal(str(tenant)),
            )
            with cur.copy(statement) as copy:
                for chunk in copy:
                    out.write(chunk)
    conn.execute("DELETE FROM dyno_crm.tenant WHERE id = %s", (tenant,))
    conn.commit()

    runner = CliRunner()
    base = ["--database-url", db_url]
    loaded = runner.invoke(cli, [*base, "load", str(data_dir)])
    assert loaded.exit_code == 0, loaded.output
    assert "Random 31" in runner.invoke(cli, [*base, "tenants"], terminal_width=200).output
    result = runner.invoke(cli, [*base, "run", "--tenant", "random 31", "--period", "FY2027-Q1",
                                 "--all", "--rollup", "--as-of", "2026-08-15",
                                 "--format", "json"])  # fmt: skip
    assert result.exit_code == 0, result.output
    document = json.loads(result.output)
    header = document["run"]
    assert (header["period_start"], header["period_end"]) == ("2026-07-01", "2026-10-01")
    assert header["parameters"]["period"] == "FY2027-Q1"
    assert set(header["parameters"]["rates"]) == {"EUR", "GBP"}  # JPY has no rate

    oracle = Oracle(conn, tenant)
    assert {d.currency for d in oracle.all_deals} == {None, "USD", "EUR", "GBP", "JPY"}
    assert any(parent is not None for parent in oracle.parent.values())
    options = Options(*fiscal_q1, as_of=dt.date(2026, 8, 15), rollup=True)
    run = get_run(conn, uuid.UUID(document["run_id"]))
    assert {(r.principal_type, r.principal_id) for r in run.rows} == oracle.run_principals(options)
    for row in run.rows:
        compare_row(oracle, options, row)
    assert any(row["member_target_amount"] is not None for row in run.rows)


def test_a_rolled_up_run_lists_its_teams_as_their_tree(
    conn: psycopg.Connection[Any], db_url: str, live_server: str
) -> None:
    """Region over A (over A1) and B. Flat, the default order would be A1 (quota met),
    A, Region, B; a rolled-up run lists the reps, then Region, A, A1, B — each team
    with its depth and the team above it — in the JSON, the API and the table. The
    run records the tree it rolled up over, so a team moved since does not move."""
    org = build_org(conn)
    runner = CliRunner()
    args = ["--database-url", db_url, "run", "--tenant", "Org Co", "--period", "2026-Q1",
            "--all", "--rollup", "--as-of", AS_OF.isoformat()]  # fmt: skip
    found = json.loads(runner.invoke(cli, [*args, "--format", "json"]).output)
    assert found["run"]["parameters"]["team_parents"] == {
        str(org.a): str(org.region),
        str(org.b): str(org.region),
        str(org.a1): str(org.a),
    }
    teams = [r for r in found["rows"] if r["principal_type"] == "GROUP"]
    assert [(r["principal_name"], r["depth"], r["parent_label"]) for r in teams] == [
        ("Region", 0, None), ("Team A", 1, "Region"), ("Team A1", 2, "Team A"),
        ("Team B", 1, "Region"),
    ]  # fmt: skip
    assert [r["order"] for r in found["rows"]] == list(range(len(found["rows"])))
    assert all(r["principal_type"] == "USER" for r in found["rows"][: -len(teams)])
    # Moving a team afterwards changes neither the stored run nor how it is shown.
    conn.execute("UPDATE dyno_crm.crm_group SET parent_group_id = NULL WHERE id = %s", (org.a1,))
    conn.commit()
    _, key = create_api_key(conn, org.tenant)
    shown = httpx.get(f"{live_server}/v1/coverage-runs/{found['run_id']}",
                      headers={"Authorization": f"Bearer {key}"}, timeout=30).json()  # fmt: skip
    assert [r for r in shown["rows"] if r["principal_type"] == "GROUP"] == teams
    table = runner.invoke(cli, ["--database-url", db_url, "show", found["run_id"]],
                          terminal_width=200)  # fmt: skip
    lines = [
        line
        for line in table.output.splitlines()
        if "│" in line and ("Region" in line or "Team" in line)
    ]  # (the table's rows)
    assert [line.split("│")[2].rstrip() for line in lines] == [
        " Region",
        " └ Team A",
        "   └ Team A1",
        " └ Team B",
    ]
    # Without roll-up the teams are a flat list in the default order.
    plain_args = [*args[:-3], "--no-rollup", "--as-of", AS_OF.isoformat(), "--format", "json"]
    plain = json.loads(runner.invoke(cli, plain_args).output)
    assert "team_parents" not in plain["run"]["parameters"]
    flat = [r for r in plain["rows"] if r["principal_type"] == "GROUP"]
    assert {r["depth"] for r in flat} == {0}
    assert {r["parent_label"] for r in flat} == {None}
