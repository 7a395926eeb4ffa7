"""The encrypted-inference commands (docs/MODELS.md): ``models`` lists the published models,
``publish-model`` lists one of your trained models, and ``predict`` encrypts a CSV of rows on this
machine, has the server score the ciphertexts, and writes the decrypted scores and predictions.
``predict`` needs TenSEAL (``pip install "cloakroom-client[he]"``)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

import pandas as pd

from cloakroom_client.cli.catalogue import print_json
from cloakroom_client.cli.tables import format_table
from cloakroom_client.client import Client

COMMANDS = ("models", "publish-model", "predict", "pate")


def add_commands(sub: Any) -> None:
    """Add the commands to ``sub``, the subparsers of the ``cloakroom`` parser."""
    p = sub.add_parser("models", help="list the models published for encrypted inference")
    p.add_argument("--json", action="store_true", help="print the API's JSON")

    p = sub.add_parser("publish-model", help="publish a released train job's model for encrypted inference")
    p.add_argument("job", type=int, help="the train job's id (yours, released)")
    p.add_argument("--title", required=True)
    p.add_argument("--price", required=True, help="credits per prediction, e.g. 0.01")

    p = sub.add_parser(
        "predict",
        help="encrypt the rows of a CSV here, have a published model score them under encryption, decrypt",
    )
    p.add_argument("model", type=int, help="the published model's id (see `cloakroom models`)")
    p.add_argument("rows", help="a CSV file with a header row holding the model's feature columns")
    p.add_argument("--out", "-o", help="write the scores here (CSV) instead of the terminal")
    p.add_argument("--timeout", type=float, default=600.0, help="seconds to wait for each batch (default 600)")
    p.add_argument("--no-progress", action="store_true", help="do not draw the progress line on stderr")

    p = sub.add_parser("pate", help="label the rows of a CSV by an ensemble's teachers (a PATE job, docs/PATE.md)")
    p.add_argument("ensemble", type=int, help="the ensemble's id")
    p.add_argument("rows", help="a CSV file with a header row holding the ensemble's feature columns")
    p.add_argument("--out", "-o", help="write the labels here (CSV: row,label) instead of the terminal")
    p.add_argument("--spec", default="{}", help='the spec as JSON, e.g. \'{"teachers": 250, "max_queries": 500}\'')
    p.add_argument(
        "--student",
        metavar="FILE",
        help="also train a student on the answered labels (spec.student) and write its model file here (JSON)",
    )
    p.add_argument("--timeout", type=float, default=600.0, help="seconds to wait for the job (default 600)")
    p.add_argument("--no-progress", action="store_true", help="do not draw the progress line on stderr")


def _models(args: argparse.Namespace, client: Client) -> int:
    rows = client.published_models()
    if args.json:
        print_json(rows)
    elif not rows:
        print("No published models.")
    else:
        header = ["id", "type", "features", "classes", "price", "owner", "title"]
        table = [
            [
                m["id"],
                m["type"],
                len(m["features"]),
                ",".join(map(str, m["classes"] or [])) or "-",
                m["price_per_prediction"],
                m["owner"],
                m["title"],
            ]
            for m in rows
        ]
        print(format_table(header, table))
    return 0


def _predict(args: argparse.Namespace, client: Client) -> int:
    frame = pd.read_csv(args.rows)
    scores = client.predict(args.model, frame, progress=not args.no_progress, timeout=args.timeout)
    if args.out:
        scores.to_csv(args.out, index=False)
        print(f"wrote {args.out} ({len(scores)} rows)", file=sys.stderr)
    else:
        sys.stdout.write(scores.to_csv(index=False))
    return 0


def _pate(args: argparse.Namespace, client: Client) -> int:
    spec = json.loads(args.spec)
    if not isinstance(spec, dict):
        raise SystemExit("--spec must be a JSON object")
    if args.student:
        spec["student"] = True
    frame = pd.read_csv(args.rows)
    labels = client.pate(args.ensemble, frame, timeout=args.timeout, progress=not args.no_progress, **spec)
    table = pd.DataFrame({"row": range(1, len(labels) + 1), "label": labels["label"].to_numpy()})
    attrs = labels.attrs
    print(
        f"job {attrs['job']}: {attrs['answered']} of {attrs['asked']} asked rows labelled, epsilon {attrs['epsilon']:.2f} "
        f"at delta {attrs['delta']:g}",
        file=sys.stderr,
    )
    if args.out:
        table.to_csv(args.out, index=False)
        print(f"wrote {args.out}: {attrs['answered']} of {len(table)} rows labelled", file=sys.stderr)
    else:
        sys.stdout.write(table.to_csv(index=False))
    if args.student:
        if not attrs["student"]:
            reason = (client.job(attrs["job"]).get("result") or {}).get("student_error", "no student was released")
            print(f"no student: {reason}", file=sys.stderr)
            return 1
        with open(args.student, "w") as out:
            json.dump(client.model_file(attrs["job"]), out, indent=2)
        print(f"wrote {args.student}: the student's model file (cloakroom_client.models.estimator)", file=sys.stderr)
    return 0


def run(args: argparse.Namespace, client: Client) -> int:
    """Run one of the commands; the SDK's errors are the caller's to print."""
    if args.command == "models":
        return _models(args, client)
    if args.command == "publish-model":
        print_json(client.publish_model(args.job, title=args.title, price_per_prediction=args.price))
        return 0
    if args.command == "pate":
        return _pate(args, client)
    return _predict(args, client)
