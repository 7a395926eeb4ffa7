"""The buyer's compute commands: ``estimate``, ``query``, ``jobs`` and ``result``, and ``dummy-query``
and ``dummy-table`` for trying queries on a dataset's fake table first (free, no purchase needed).

A query is given either whole, as JSON (``--query '{"aggregate": "mean", "column": "bmi"}'`` or
``--query @query.json``), or built from flags (``--aggregate mean --column bmi --group-by sex --where
age=18..65``); flags given beside a JSON query override its fields. Every command speaks the public
API through the SDK, prints a table by default and the API's JSON with ``--json``.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from cloakroom_client.cli.catalogue import print_json
from cloakroom_client.cli.tables import csv_table, describe_query, format_table, key_value_table, result_table
from cloakroom_client.client import Client

COMMANDS = ("estimate", "query", "jobs", "result", "dummy-query", "dummy-table")
FAKE_BANNER = "FAKE DATA"
JOB_STATUSES = ("queued", "running", "awaiting_key", "released", "failed", "cancelled")
ESTIMATE_FIELDS = (
    "epsilon",
    "delta",
    "price",
    "noise_scale",
    "ci95_halfwidth",
    "exact",
    "mechanism",
    "rows_assumed",
    "epsilon_remaining",
    "affordable",
    "share_of_allotment",
    "share_used_after",
    "epsilon_left_after",
    "note",
)


class QueryError(Exception):
    """The flags do not make a query; the message says what is missing."""


def _scalar(text: str) -> Any:
    """A filter's value as the API wants it: true and false are booleans, anything else a string."""
    return {"true": True, "false": False}.get(text.lower(), text)


def parse_where(text: str) -> dict:
    """``col=a`` (eq), ``col=a,b`` (in), ``col=lo..hi`` (a numeric range; either end may be left out)."""
    column, sep, value = text.partition("=")
    if not sep or not column or not value:
        raise argparse.ArgumentTypeError(f"{text!r}: write COLUMN=VALUE, COLUMN=A,B or COLUMN=LOW..HIGH")
    if ".." in value:
        low, _, high = value.partition("..")
        try:
            return {
                "column": column,
                "op": "range",
                "low": float(low) if low else None,
                "high": float(high) if high else None,
            }
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r}: a range's ends must be numbers") from None
    if "," in value:
        return {"column": column, "op": "in", "values": [_scalar(v) for v in value.split(",")]}
    return {"column": column, "op": "eq", "value": _scalar(value)}


def _numbers(text: str) -> list[float]:
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: give numbers separated by commas") from None


def _bins(text: str) -> int | list[float]:
    return int(text) if text.isdigit() else _numbers(text)


def _add_query_arguments(p: argparse.ArgumentParser, *, on_purchase: bool = True) -> None:
    if on_purchase:
        p.add_argument("purchase", type=int, help="the purchase whose budget pays (see `cloakroom purchases`)")
    else:
        p.add_argument("dataset", type=int, help="the dataset whose fake table answers (see `cloakroom datasets`)")
    p.add_argument("--query", help="the whole query as JSON, or @FILE to read it from a file")
    p.add_argument("--aggregate", "-a", help="count, sum, mean, variance, std, quantile, histogram, ...")
    p.add_argument("--column", "-c", help="the column aggregated")
    p.add_argument("--group-by", "-g", action="append", help="a categorical or boolean column (repeat for more)")
    p.add_argument(
        "--where",
        "-w",
        action="append",
        type=parse_where,
        help="keep rows where COLUMN=VALUE, COLUMN=A,B (any of) or COLUMN=LOW..HIGH (repeat: all must hold)",
    )
    p.add_argument("--quantiles", type=_numbers, help="quantile: the quantiles, e.g. 0.25,0.5,0.75")
    p.add_argument("--bins", type=_bins, help="histogram: a number of bins, or the edges, e.g. 0,18,65,120")
    p.add_argument("--delta", default="0", help="delta to spend (default 0)")
    p.add_argument("--json", action="store_true", help="print the API's JSON instead of a table")


def add_commands(sub: Any) -> None:
    """Add the compute commands to ``sub``, the subparsers of the ``cloakroom`` parser."""
    p = sub.add_parser("estimate", help="a query's accuracy and price before running it (spends nothing)")
    _add_query_arguments(p)
    p.add_argument("--epsilon", help="the epsilon you would spend; or give --ci95")
    p.add_argument("--ci95", type=float, help="the 95%% half-width you want; the answer is the epsilon it needs")
    p.add_argument("--rows", type=int, help="how many rows the answer covers, if the count is private")

    p = sub.add_parser(
        "query",
        help="run a query: submit it, wait with a progress line on stderr, print the result as a table",
    )
    _add_query_arguments(p)
    p.add_argument("--epsilon", required=True, help="the epsilon to spend, e.g. 0.5")
    p.add_argument("--timeout", type=float, default=300.0, help="seconds to wait for the result (default 300)")
    p.add_argument("--no-wait", action="store_true", help="submit and print the queued job; do not wait")
    p.add_argument("--no-progress", action="store_true", help="do not draw the progress line on stderr")
    p.add_argument("--idempotency-key", help="a retried submission with the same key returns the first job")

    p = sub.add_parser(
        "dummy-query",
        help="try a query on a dataset's fake table, generated from its declared schema: free, no purchase needed",
    )
    _add_query_arguments(p, on_purchase=False)
    p.add_argument("--epsilon", help="the epsilon whose noise the fake answer carries (default 1; nothing is spent)")

    p = sub.add_parser("dummy-table", help="download a dataset's fake table (CSV), generated from its declared schema")
    p.add_argument("dataset", type=int, help="the dataset's id")
    p.add_argument("--output", "-o", help="write to this file instead of the terminal")

    p = sub.add_parser("jobs", help="list your jobs, newest first")
    p.add_argument("--status", choices=JOB_STATUSES)
    p.add_argument("--json", action="store_true", help="print the API's JSON instead of a table")

    p = sub.add_parser("result", help="show or download a released job's result")
    p.add_argument("id", type=int, help="the job's id")
    fmt = p.add_mutually_exclusive_group()
    fmt.add_argument("--csv", action="store_true", help="the result as CSV, one row per group, bin or quantile")
    fmt.add_argument("--json", action="store_true", help="the release as stored, with its receipt")
    p.add_argument("--output", "-o", help="write to this file instead of the terminal")


def build_query(args: argparse.Namespace) -> dict:
    """The query of ``args``: the JSON of ``--query`` (if any), then the fields the flags set."""
    query: dict = {}
    if args.query:
        text = args.query
        if text.startswith("@"):
            with open(text[1:], encoding="utf-8") as handle:
                text = handle.read()
        query = json.loads(text)
        if not isinstance(query, dict):
            raise QueryError("--query must be a JSON object")
    fields = {
        "aggregate": args.aggregate,
        "column": args.column,
        "group_by": args.group_by,
        "filters": args.where,
        "quantiles": args.quantiles,
        "bins": args.bins,
    }
    query.update({k: v for k, v in fields.items() if v is not None})
    if "aggregate" not in query:
        raise QueryError("say what to compute: --aggregate (count, mean, ...) or --query JSON")
    return query


def _estimate(args: argparse.Namespace, client: Client) -> int:
    if (args.epsilon is None) == (args.ci95 is None):
        print("error: give --epsilon or --ci95 (one of them)", file=sys.stderr)
        return 2
    query = build_query(args)
    est = client.estimate(
        args.purchase, query, epsilon=args.epsilon, delta=args.delta, ci95_halfwidth=args.ci95, rows=args.rows
    )
    if args.json:
        print_json(est)
    else:
        print(f"{describe_query(query)} on purchase {args.purchase}")
        print(key_value_table([(name, est.get(name)) for name in ESTIMATE_FIELDS if name in est]))
    return 0


def _receipt_line(job: dict) -> str:
    receipt = job.get("receipt") or {}
    parts = [f"job {job['id']}", describe_query(job.get("query")), f"epsilon charged {receipt.get('epsilon_charged')}"]
    if receipt.get("mechanism"):
        parts.append(f"mechanism {receipt['mechanism']}")
    if job.get("reused"):
        parts.append("an earlier answer, free")
    return " · ".join(parts)


def _query(args: argparse.Namespace, client: Client) -> int:
    job = client.submit(
        args.purchase, build_query(args), epsilon=args.epsilon, delta=args.delta, idempotency_key=args.idempotency_key
    )
    if not args.no_wait:
        reused = job.get("reused")
        try:
            job = client.wait(job, timeout=args.timeout, progress=not args.no_progress)
        except TimeoutError as exc:
            print(f"error: {exc}; `cloakroom result {job['id']}` shows it once released", file=sys.stderr)
            return 1
        job["reused"] = reused
    if args.json or args.no_wait:
        print_json(job)
    elif job["status"] == "released":
        print(csv_table(client.download(job, "csv")))
        print(_receipt_line(job))
    if job["status"] in ("failed", "cancelled"):
        print(f"error: job {job['id']} {job['status']}: {job.get('error') or 'no reason given'}", file=sys.stderr)
        return 1
    return 0


def _jobs(args: argparse.Namespace, client: Client) -> int:
    rows = client.jobs(status=args.status)
    if args.json:
        print_json(rows)
    elif not rows:
        print("No jobs.")
    else:
        header = ["id", "status", "dataset", "purchase", "epsilon", "query", "created"]
        table = [
            [
                j["id"],
                j["status"],
                j["dataset"],
                j["purchase"],
                j["epsilon"],
                describe_query(j.get("query")),
                j["created_at"][:19],
            ]
            for j in rows
        ]
        print(format_table(header, table))
    return 0


def _result(args: argparse.Namespace, client: Client) -> int:
    text = client.download(args.id, "json" if args.json else "csv")
    if not (args.csv or args.json):
        text = csv_table(text) + "\n"
    if args.output:
        with open(args.output, "w", encoding="utf-8", newline="") as handle:
            handle.write(text)
        print(f"wrote {args.output}", file=sys.stderr)
    else:
        sys.stdout.write(text if text.endswith("\n") else text + "\n")
    return 0


def _dummy_query(args: argparse.Namespace, client: Client) -> int:
    answer = client.dummy_query(args.dataset, build_query(args), epsilon=args.epsilon, delta=args.delta)
    if args.json:
        print_json(answer)
        return 0
    print(f"{FAKE_BANNER}: {answer['note']}.")
    print(result_table(answer["result"], answer["query"]))
    print(
        f"{describe_query(answer['query'])} on {answer['rows']:,} fake rows of dataset {answer['dataset']} · "
        f"noise of epsilon {answer['epsilon']}, nothing charged · mechanism {answer['mechanism']}"
    )
    return 0


def _dummy_table(args: argparse.Namespace, client: Client) -> int:
    text = client.dummy_table(args.dataset)
    if args.output:
        with open(args.output, "w", encoding="utf-8", newline="") as handle:
            handle.write(text)
        print(f"wrote {args.output} ({FAKE_BANNER}: generated from the declared schema)", file=sys.stderr)
    else:
        print(f"{FAKE_BANNER}: generated from the declared schema; says nothing about the real data", file=sys.stderr)
        sys.stdout.write(text)
    return 0


def run(args: argparse.Namespace, client: Client) -> int:
    """Run one compute command; the SDK's errors are the caller's to print."""
    handlers = {"estimate": _estimate, "query": _query, "jobs": _jobs, "result": _result}
    handlers.update({"dummy-query": _dummy_query, "dummy-table": _dummy_table})
    handler = handlers[args.command]
    return handler(args, client)
