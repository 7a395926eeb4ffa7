"""The ``cloakroom`` parser and its dispatch to the command groups.

Configuration comes from flags or the environment: ``--url`` / ``CLOAKROOM_URL`` (default
http://127.0.0.1:8000) and ``--api-key`` / ``CLOAKROOM_API_KEY``; without a key, the one ``cloakroom
login`` saved for that server (:mod:`cloakroom_client.credentials`).
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from cloakroom_client.cli import account, bundles, catalogue, compute, key_agent, models
from cloakroom_client.cli.compute import QueryError
from cloakroom_client.client import Client, CloakroomError
from cloakroom_client.credentials import saved_key
from cloakroom_client.models import ModelFileError
from cloakroom_client.protocol.inference import InferenceError


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
        "--api-key",
        default=os.environ.get("CLOAKROOM_API_KEY"),
        help="API key (env CLOAKROOM_API_KEY; default: the key `cloakroom login` saved for this server)",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    account.add_commands(sub)
    catalogue.add_commands(sub)
    compute.add_commands(sub)
    models.add_commands(sub)
    bundles.add_commands(sub)
    key_agent.add_commands(sub)
    return parser


def _dispatch(args: argparse.Namespace, client: Client) -> int:
    if args.command == "he":
        return bundles.run(args, client)
    if args.command in account.COMMANDS:
        return account.run(args, client)
    if args.command in compute.COMMANDS:
        return compute.run(args, client)
    if args.command in models.COMMANDS:
        return models.run(args, client)
    return catalogue.run(args, client)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not args.api_key and args.command not in account.COMMANDS:
        saved = saved_key(args.url)
        args.api_key = saved["key"] if saved else None
    client = Client(args.url, args.api_key)
    if args.command == "key-agent":
        return key_agent.run(args, client)
    try:
        return _dispatch(args, client)
    except QueryError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except CloakroomError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        for name, reasons in exc.fields.items():
            print(f"  {name}: {'; '.join(map(str, reasons))}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except (InferenceError, ModelFileError) as exc:  # a CSV without the model's columns, a failed prediction
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except json.JSONDecodeError as exc:
        print(f"error: not valid JSON: {exc}", file=sys.stderr)
        return 1
