"""The reconciliation invariant (SPEC.md §7), checked on every database the suite
used: every amount and count of every fact row equals the sum over the drill-down
rows behind it, to the cent; and a run stores each of its deals once, in the chunk
its credit rows say holds it. Plain Python over plain queries, independent of the
SQL that wrote the runs."""

from __future__ import annotations

from collections import defaultdict
from decimal import Decimal
from typing import Any

import psycopg

SUMMED = (
    "open_amount", "open_count", "weighted_amount", "commit_amount", "best_case_amount",
    "pipeline_amount", "omitted_amount", "won_amount", "won_count", "lost_amount",
    "lost_count", "past_due_amount", "past_due_count", "undated_amount", "undated_count",
)  # fmt: skip


def _expected(deals: list[dict[str, Any]]) -> dict[str, Any]:
    sums: dict[str, Any] = {name: Decimal(0) if "amount" in name else 0 for name in SUMMED}
    for deal in deals:
        amount = deal["reporting_amount"]
        if amount is None:
            continue  # NO_RATE: in the drill-down, in no amount or count
        if deal["deal_class"] == "OPEN":
            sums["open_amount"] += amount
            sums["open_count"] += 1
            sums["weighted_amount"] += deal["weighted_amount"]
            sums[f"{deal['forecast_category'].lower()}_amount"] += amount
            if "PAST_DUE" in deal["flags"]:
                sums["past_due_amount"] += amount
                sums["past_due_count"] += 1
        elif deal["deal_class"] == "WON":
            sums["won_amount"] += amount
            sums["won_count"] += 1
        elif deal["deal_class"] == "LOST":
            sums["lost_amount"] += amount
            sums["lost_count"] += 1
        else:
            sums["undated_amount"] += amount
            sums["undated_count"] += 1
    return sums


def problems(url: str) -> list[str]:
    """What breaks the invariant in the database at ``url`` (empty when it holds)."""
    with psycopg.connect(url) as conn:
        present = conn.execute("SELECT to_regclass('dyno_crm.report_run_deals')").fetchone()
        if present is None or present[0] is None:
            return []
        with conn.cursor(row_factory=psycopg.rows.dict_row) as cur:
            facts = cur.execute(
                "SELECT * FROM dyno_crm.report_pipeline_coverage_fact WHERE open_count IS NOT NULL"
            ).fetchall()
            stored_credits = cur.execute("SELECT * FROM dyno_crm.report_run_credit").fetchall()
            runs = cur.execute("SELECT * FROM dyno_crm.report_run_deals").fetchall()
            headers = cur.execute("SELECT * FROM dyno_crm.report_run").fetchall()
    by_deal: dict[Any, dict[str, Any]] = {}
    found = []
    rows = {(run["tenant_id"], run["run_id"], run["chunk"]): run for run in runs}
    for (tenant, run_id, chunk), run in rows.items():
        # A chunk stored as what changed (migration 0017) is resolved here on its own
        # terms, not by the SQL the product reads: along its chain, the last entry of
        # a deal wins and a removal drops it.
        chain = run.get("chain") or []
        if chain:
            base = rows.get((tenant, chain[-1], chunk))
            if set(run["deal_ids"]) & set(run["removed_deal_ids"]):
                found.append(f"run {run_id} chunk {chunk}: a deal both stored and removed")
            if base is not None and [*(base.get("chain") or []), chain[-1]] != chain:
                found.append(f"run {run_id} chunk {chunk}: its chain is not its base's and it")
            root = rows.get((tenant, chain[0], chunk))
            if root is not None and root.get("chain"):
                found.append(f"run {run_id} chunk {chunk}: its chain starts at a delta")
        chunk_deals: dict[Any, dict[str, Any]] = {}
        for level in [*(run.get("chain") or []), run_id]:
            stored = rows.get((tenant, level, chunk))
            if stored is None:
                found.append(f"run {run_id} chunk {chunk}: builds on run {level}, not stored")
                continue
            for i, deal_id in enumerate(stored["deal_ids"]):
                if level == run_id and deal_id in chunk_deals and not run.get("chain"):
                    found.append(f"run {run_id}: deal {deal_id} stored twice")
                chunk_deals[deal_id] = {
                    "chunk": chunk,
                    "deal_class": stored["deal_classes"][i],
                    "reporting_amount": stored["reporting_amounts"][i],
                    "weighted_amount": stored["weighted_amounts"][i],
                    "forecast_category": stored["forecast_categories"][i],
                    "flags": (stored["flags"][i] or "").split(","),
                }
            for deal_id in stored.get("removed_deal_ids") or []:
                chunk_deals.pop(deal_id, None)
        for deal_id, values in chunk_deals.items():
            if (tenant, run_id, deal_id) in by_deal:
                found.append(f"run {run_id}: deal {deal_id} stored twice")
            by_deal[(tenant, run_id, deal_id)] = values
    credits, credit_problems = _resolved_credits(headers, stored_credits)
    found += credit_problems
    behind: dict[Any, list[dict[str, Any]]] = defaultdict(list)
    for credit in credits:
        key = (credit["tenant_id"], credit["run_id"], credit["principal_type"],
               credit["principal_id"], credit["pipeline_id"])  # fmt: skip
        if len(set(credit["deal_ids"])) != len(credit["deal_ids"]):
            found.append(f"{key}: a deal credited twice to one row")
        chunks = credit["deal_chunks"] or [0] * len(credit["deal_ids"])
        for deal_id, chunk in zip(credit["deal_ids"], chunks, strict=True):
            deal = by_deal.get((credit["tenant_id"], credit["run_id"], deal_id))
            if deal is None:
                found.append(f"{key}: credits deal {deal_id}, which the run did not store")
            elif deal["chunk"] != chunk:
                found.append(f"{key}: deal {deal_id} is in chunk {deal['chunk']}, not {chunk}")
            else:
                behind[key].append(deal)
    fact_keys = set()
    for fact in facts:
        key = (fact["tenant_id"], fact["run_id"], fact["principal_type"], fact["principal_id"],
               fact["pipeline_id"])  # fmt: skip
        fact_keys.add(key)
        expected = _expected(behind.get(key, []))
        for name in SUMMED:
            if fact[name] != expected[name]:
                found.append(f"{key}: {name} is {fact[name]}, its deals sum to {expected[name]}")
    found += [f"{key}: drill-down without a fact row" for key in set(behind) - fact_keys]
    return found


def _resolved_credits(
    headers: list[dict[str, Any]], stored: list[dict[str, Any]]
) -> tuple[list[dict[str, Any]], list[str]]:
    """Each run's credit rows (migration 0018), resolved here on their own terms: a run
    with a credit chain has, per principal and bucket, its last row along the chain
    and itself, unless that row is removed; a run without one, its own rows."""
    found: list[str] = []
    by_run: dict[Any, dict[Any, dict[str, Any]]] = defaultdict(dict)
    for credit in stored:
        key = (credit["principal_type"], credit["principal_id"], credit["pipeline_id"])
        by_run[(credit["tenant_id"], credit["run_id"])][key] = credit
        if credit.get("removed") and credit["deal_ids"]:
            found.append(f"run {credit['run_id']} {key}: a removed row names deals")
    chains = {(h["tenant_id"], h["id"]): h.get("credit_chain") for h in headers}
    resolved: list[dict[str, Any]] = []
    for (tenant, run_id), chain in chains.items():
        rows: dict[Any, dict[str, Any]] = {}
        if chain:
            base = chains.get((tenant, chain[-1]), "missing")
            if base == "missing":
                found.append(f"run {run_id}: its credits build on run {chain[-1]}, not stored")
            elif [*(base or []), chain[-1]] != chain:
                found.append(f"run {run_id}: its credit chain is not its base's and it")
            if chains.get((tenant, chain[0])):
                found.append(f"run {run_id}: its credit chain starts at a delta")
        for level in [*(chain or []), run_id]:
            for key, credit in by_run.get((tenant, level), {}).items():
                if credit.get("removed"):
                    rows.pop(key, None)
                else:
                    rows[key] = credit
        if not chain and any(c.get("removed") for c in by_run.get((tenant, run_id), {}).values()):
            found.append(f"run {run_id}: stored complete, with a removed credit row")
        resolved += [{**credit, "run_id": run_id} for credit in rows.values()]
    return resolved, found
