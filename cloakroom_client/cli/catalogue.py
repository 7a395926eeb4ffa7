"""The account and catalogue commands: ``me``, ``datasets``, ``dataset``, ``upload``, ``publish``,
``buy`` and ``purchases``, each a call of the SDK printed as JSON (or a table, for ``datasets``)."""

from __future__ import annotations

import argparse
import json
from typing import Any

from cloakroom_client.client import Client

COMMANDS = ("me", "datasets", "dataset", "upload", "publish", "buy", "purchases")


def print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, sort_keys=False))


def add_commands(sub: Any) -> None:
    """Add the commands to ``sub``, the subparsers of the ``cloakroom`` parser."""
    sub.add_parser("me", help="show the account behind the API key")

    p = sub.add_parser("datasets", help="list the datasets you can see")
    p.add_argument("--search", help="words in the title, description or column names")
    p.add_argument("--mode", choices=["dp", "he"])
    p.add_argument("--mine", action="store_true", help="only your own datasets")

    p = sub.add_parser("dataset", help="show one dataset with its schema and budget")
    p.add_argument("id", type=int)

    p = sub.add_parser("upload", help="upload a CSV or Parquet file with its schema (a JSON metadata file)")
    p.add_argument("file")
    p.add_argument(
        "--metadata", required=True, help="path of a JSON file: title, epsilon_cap, price_per_epsilon, columns, ..."
    )

    p = sub.add_parser("publish", help="publish one of your draft datasets")
    p.add_argument("id", type=int)

    p = sub.add_parser("buy", help="buy an allotment of a dataset's epsilon")
    p.add_argument("dataset", type=int)
    p.add_argument("epsilon", help="a decimal, e.g. 0.5")

    sub.add_parser("purchases", help="list your purchases and what is left of each")


def _datasets(args: argparse.Namespace, client: Client) -> None:
    rows = client.datasets(search=args.search, mode=args.mode, mine=args.mine or None)
    for d in rows:
        print(
            f"{d['id']:>5}  {d['mode']}  {d['status']:<9}  eps left {d['epsilon_available']:>12}  {d['price_per_epsilon']:>8}/eps  {d['title']}"
        )
    if not rows:
        print("No datasets.")


def _upload(args: argparse.Namespace, client: Client) -> None:
    with open(args.metadata, encoding="utf-8") as handle:
        metadata = json.load(handle)
    print_json(client.upload(args.file, metadata))


def run(args: argparse.Namespace, client: Client) -> int:
    """Run one catalogue command; the SDK's errors are the caller's to print."""
    if args.command == "me":
        print_json(client.me())
    elif args.command == "datasets":
        _datasets(args, client)
    elif args.command == "dataset":
        print_json(client.dataset(args.id))
    elif args.command == "upload":
        _upload(args, client)
    elif args.command == "publish":
        print_json(client.publish(args.id))
    elif args.command == "buy":
        print_json(client.buy(args.dataset, args.epsilon))
    elif args.command == "purchases":
        print_json(client.purchases())
    return 0
