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

    he = sub.add_parser(
        "he",
        help="homomorphic-encryption mode: encrypt a CSV on this machine and publish only ciphertexts",
        description="Homomorphic-encryption mode. The data is encrypted here; the server only ever sees "
        "ciphertexts and a public context, and the secret key stays in your keystore.",
    )
    he_sub = he.add_subparsers(dest="he_command", required=True, metavar="HE_COMMAND")
    p = he_sub.add_parser(
        "encrypt",
        help="encrypt a CSV into a bundle directory; the secret key goes to the local keystore",
        description="Check a CSV against its declared schema, clip numeric columns to their bounds, expand "
        "categorical columns into one indicator per category, and encrypt every column with CKKS into a "
        "bundle directory (manifest.json, context.bin, c<column>.<chunk>.ct). The secret key is written "
        "to the keystore, never into the bundle.",
    )
    p.add_argument("csv", help="the CSV file to encrypt")
    p.add_argument(
        "--schema",
        required=True,
        help="JSON file: the list of columns [{name, kind, lower, upper, categories}] (or metadata with 'columns')",
    )
    p.add_argument("--out", required=True, help="the bundle directory to create (must be new or empty)")
    p.add_argument(
        "--job-classes",
        default="sum",
        help="what buyers may compute: 'sum' (counts, sums, means; ~40 bytes per value) or 'sum,product' "
        "(also variances, dot products, regression statistics; ~81 bytes per value). Default: sum",
    )
    p.add_argument(
        "--keystore",
        default=None,
        help="folder for the secret key (default $CLOAKROOM_KEYSTORE or ~/.cloakroom/keys)",
    )
    p.add_argument("--no-progress", action="store_true", help="do not draw a progress bar on stderr")
    p = he_sub.add_parser(
        "publish",
        help="create an HE dataset and upload a bundle to it (resumable, with a progress bar)",
        description="Create an HE dataset from a metadata file and upload the bundle's context and "
        "ciphertexts in chunks. The secret key is never uploaded.",
    )
    p.add_argument("bundle", help="a bundle directory written by `cloakroom he encrypt`")
    p.add_argument(
        "--metadata", required=True, help="JSON file: title, description, epsilon_cap, price_per_epsilon, ..."
    )
    p.add_argument("--no-progress", action="store_true", help="do not draw a progress bar on stderr")
    return parser


def _he_encrypt(args: argparse.Namespace) -> int:
    # Imported here so that the rest of the CLI works where TenSEAL is not installed.
    from cloakroom_client import he

    with open(args.schema, encoding="utf-8") as handle:
        schema = json.load(handle)
    try:
        manifest = he.encrypt_csv(
            args.csv,
            schema,
            args.out,
            job_classes=args.job_classes,
            keystore=args.keystore,
            progress=not args.no_progress,
        )
    except he.HEError as exc:
        # The problems are sentences naming the column and its first offending rows.
        if len(exc.problems) == 1:
            print(f"error: {exc.problems[0]}", file=sys.stderr)
        else:
            print("error: the file was refused:", file=sys.stderr)
            for problem in exc.problems:
                print(f"  {problem}", file=sys.stderr)
        return 1
    stats = he.bundle_stats(manifest)
    print(f"bundle id:       {manifest['bundle_id']}")
    print(f"rows:            {manifest['rows']}")
    print(f"columns:         {len(manifest['columns'])} ({', '.join(c['name'] for c in manifest['columns'])})")
    print(
        f"parameters:      CKKS N={manifest['poly_modulus_degree']} {manifest['coeff_mod_bit_sizes']} "
        f"scale 2^{manifest['global_scale_bits']}, job classes {','.join(manifest['job_classes'])}"
    )
    print(
        f"ciphertexts:     {stats['ciphertexts']} files, {stats['ciphertext_bytes']} bytes, "
        f"{stats['bytes_per_slot']:.1f} bytes per value ({stats['bytes_per_value']:.1f} per row value with padding)"
    )
    print(f"public context:  {stats['context_bytes']} bytes ({args.out}/context.bin; no secret key, no Galois keys)")
    print(f"secret key:      {he.secret_key_path(manifest['bundle_id'], args.keystore)} (mode 0600; keep it safe)")
    return 0


def _he_publish(args: argparse.Namespace, client: Client) -> int:
    try:
        from cloakroom_client.upload import publish_bundle
    except ImportError:
        print(
            "error: this installation of cloakroom_client cannot publish bundles yet "
            "(the module cloakroom_client.upload is missing); upgrade the client",
            file=sys.stderr,
        )
        return 1
    with open(args.metadata, encoding="utf-8") as handle:
        metadata = json.load(handle)
    _print(publish_bundle(client, args.bundle, metadata, progress=not args.no_progress))
    return 0


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
        elif args.command == "he" and args.he_command == "encrypt":
            return _he_encrypt(args)
        elif args.command == "he" and args.he_command == "publish":
            return _he_publish(args, client)
    except CloakroomError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        for name, reasons in exc.fields.items():
            print(f"  {name}: {'; '.join(map(str, reasons))}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except json.JSONDecodeError as exc:
        print(f"error: not valid JSON: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
