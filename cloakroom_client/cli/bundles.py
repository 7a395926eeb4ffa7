"""The ``cloakroom he`` commands: ``encrypt`` a CSV into a bundle on this machine, ``publish`` a
bundle as an HE dataset, and ``escrow`` (or revoke) a dataset's secret key."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from cloakroom_client import he
from cloakroom_client.cli.catalogue import print_json
from cloakroom_client.client import Client


def add_commands(sub: Any) -> None:
    """Add ``he`` and its commands to ``sub``, the subparsers of the ``cloakroom`` parser."""
    group = sub.add_parser(
        "he",
        help="homomorphic-encryption mode: encrypt a CSV on this machine and publish only ciphertexts",
        description="Homomorphic-encryption mode. The data is encrypted here; the server only ever sees "
        "ciphertexts and a public context, and the secret key stays in your keystore.",
    )
    he_sub = group.add_subparsers(dest="he_command", required=True, metavar="HE_COMMAND")
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
    p.add_argument(
        "--keystore",
        default=None,
        help="the keystore holding the bundle's key, where the epsilon cap is recorded for the key agent "
        "(default $CLOAKROOM_KEYSTORE or ~/.cloakroom/keys)",
    )

    p = he_sub.add_parser(
        "escrow",
        help="escrow a dataset's secret key to the platform's escrow worker (releases then need no key agent)",
        description="Seal the dataset's secret key from your keystore to the platform's key-encryption key "
        "and upload the sealed blob. Only the platform's escrow worker (Celery queue 'keys') can open it; "
        "it then decrypts, noises and releases the dataset's jobs itself. --revoke deletes the escrowed key.",
    )
    p.add_argument("dataset", type=int, help="the HE dataset's id")
    p.add_argument("--keystore", default=None, help="folder holding the secret keys (default as for encrypt)")
    p.add_argument("--revoke", action="store_true", help="delete the escrowed key instead")


def _encrypt(args: argparse.Namespace) -> int:
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


def _publish(args: argparse.Namespace, client: Client) -> int:
    # Imported here, and not at the top, for one reason only: an installation whose client has no
    # upload module yet must say so in a sentence (tests/cloakroom_client/he/test_encrypt.py checks it), not fail to start.
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
    print_json(publish_bundle(client, args.bundle, metadata, progress=not args.no_progress, keystore=args.keystore))
    return 0


def _escrow(args: argparse.Namespace, client: Client) -> int:
    if args.revoke:
        print_json(client.unescrow(args.dataset))
        return 0
    dataset = client.bundle_state(args.dataset)  # the owner's view: it holds the bundle_id
    try:
        secret = he.load_secret_context(dataset["bundle_id"], args.keystore)
    except (he.HEError, KeyError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print_json(client.escrow(args.dataset, secret))
    return 0


def run(args: argparse.Namespace, client: Client) -> int:
    """Run one ``he`` command; the SDK's errors are the caller's to print."""
    if args.he_command == "encrypt":
        return _encrypt(args)
    if args.he_command == "publish":
        return _publish(args, client)
    return _escrow(args, client)
