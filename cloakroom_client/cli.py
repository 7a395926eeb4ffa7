"""The ``cloakroom`` command: the SDK from a terminal.

Configuration comes from flags or the environment: ``--url`` / ``CLOAKROOM_URL`` (default
http://127.0.0.1:8000) and ``--api-key`` / ``CLOAKROOM_API_KEY``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from cloakroom_client.client import Client, CloakroomError


def _print(data) -> None:
    print(json.dumps(data, indent=2, sort_keys=False))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cloakroom", description="Cloakroom: buy privacy budget and compute on data you never see."
    )
    parser.add_argument(
        "--url",
        default=os.environ.get("CLOAKROOM_URL", "http://127.0.0.1:8000"),
        help="server address (env CLOAKROOM_URL)",
    )
    parser.add_argument(
        "--api-key", default=os.environ.get("CLOAKROOM_API_KEY"), help="API key (env CLOAKROOM_API_KEY)"
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

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
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    client = Client(args.url, args.api_key)
    try:
        if args.command == "me":
            _print(client.me())
        elif args.command == "datasets":
            rows = client.datasets(search=args.search, mode=args.mode, mine=args.mine or None)
            for d in rows:
                print(
                    f"{d['id']:>5}  {d['mode']}  {d['status']:<9}  eps left {d['epsilon_available']:>12}  {d['price_per_epsilon']:>8}/eps  {d['title']}"
                )
            if not rows:
                print("No datasets.")
        elif args.command == "dataset":
            _print(client.dataset(args.id))
        elif args.command == "upload":
            with open(args.metadata, encoding="utf-8") as handle:
                metadata = json.load(handle)
            _print(client.upload(args.file, metadata))
        elif args.command == "publish":
            _print(client.publish(args.id))
        elif args.command == "buy":
            _print(client.buy(args.dataset, args.epsilon))
        elif args.command == "purchases":
            _print(client.purchases())
    except CloakroomError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        for name, reasons in exc.fields.items():
            print(f"  {name}: {'; '.join(map(str, reasons))}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
