"""The ``cloakroom`` command: the SDK from a terminal.

Configuration comes from flags or the environment: ``--url`` / ``CLOAKROOM_URL`` (default
http://127.0.0.1:8000) and ``--api-key`` / ``CLOAKROOM_API_KEY``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import time
from decimal import Decimal, InvalidOperation

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

    p = sub.add_parser(
        "key-agent",
        help="release your HE jobs: decrypt their aggregates with your key, add the noise, post the result",
        description="Poll the server for HE jobs on your datasets that wait for your key. For each, load "
        "the bundle's secret key from the keystore, decrypt the encrypted aggregates here, add the "
        "differential-privacy noise the job's plan sets, and post only the noisy values. The key and "
        "the un-noised values never leave this machine. Stop it with Ctrl-C or SIGTERM.",
    )
    p.add_argument(
        "--keystore",
        default=None,
        help="folder holding the secret keys (default $CLOAKROOM_KEYSTORE or ~/.cloakroom/keys)",
    )
    p.add_argument(
        "--interval",
        type=_positive_seconds,
        default=5.0,
        help="seconds between polls (default 5)",
    )
    p.add_argument(
        "--once",
        action="store_true",
        help="one pass, then exit: 0 if every job found was released or skipped for a missing key, 1 if any failed",
    )
    p.add_argument(
        "--epsilon-cap",
        type=_positive_decimal,
        default=None,
        help="the most epsilon this agent releases per bundle, over all jobs (default: the cap recorded in the "
        "keystore when the bundle was published from this machine)",
    )
    return parser


def _positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError("must be a number of seconds > 0")
    return value


def _positive_decimal(text: str) -> Decimal:
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value.is_finite() or value <= 0:
        raise argparse.ArgumentTypeError(f"must be a number greater than 0, got {text!r}")
    return value


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
    _print(publish_bundle(client, args.bundle, metadata, progress=not args.no_progress, keystore=args.keystore))
    return 0


def _he_escrow(args: argparse.Namespace, client: Client) -> int:
    if args.revoke:
        _print(client.unescrow(args.dataset))
        return 0
    from cloakroom_client.he import HEError, load_secret_context

    dataset = client._request("GET", f"datasets/{int(args.dataset)}/bundle/")  # the owner's view: bundle_id
    try:
        secret = load_secret_context(dataset["bundle_id"], args.keystore)
    except (HEError, KeyError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    _print(client.escrow(args.dataset, secret))
    return 0


# -- key agent -------------------------------------------------------------------------------------

AGENT_LOGGER = "cloakroom.key_agent"


class _Stop(Exception):
    """Raised by the signal handler to stop the agent where it stands (never inside a release)."""


def _describe_query(query) -> str:
    """A short label for a job's query, e.g. "mean of bmi" (never the buyer's weights)."""
    if not isinstance(query, dict):
        return "query"
    label = str(query.get("aggregate", "query"))
    if label == "regression":
        columns = query.get("columns") if isinstance(query.get("columns"), list) else []
        label += f" of {query.get('target')} on {', '.join(map(str, columns))}"
    elif query.get("column") is not None:
        label += f" of {query.get('column')}"
        if query.get("category") is not None:
            label += f"={query.get('category')}"
    flt = query.get("filter")
    if isinstance(flt, dict) and flt.get("column") is not None:
        label += f" where {flt.get('column')}" + (f"={flt['category']}" if flt.get("category") is not None else "")
    return label


def _format_value(value) -> str:
    return str(value) if isinstance(value, int) else f"{value:.6f}"


class KeyAgent:
    """One owner's key agent: lists the jobs waiting for a key and releases each with the local key.

    Secret contexts are loaded once per bundle and kept; a bundle whose key file is missing (or
    unreadable) is reported once and looked at again only when its file appears or changes. Noisy
    values drawn for a job whose release failed are kept and posted again on the next attempt, so a
    failing server never receives two independent noisy copies of the same answer.
    """

    def __init__(self, client: Client, keystore: str | None, log: logging.Logger, epsilon_cap: Decimal | None = None):
        from cloakroom_client import he

        self.he = he
        self.client = client
        self.keystore = he.keystore_dir(keystore)
        self.log = log
        self.contexts: dict = {}
        self.unavailable: dict[str, tuple] = {}  # bundle id -> (kind, file signature) already reported
        self.drawn: dict = {}  # job id -> (plan fingerprint, noisy values) of a failed release
        self.failures: dict[int, str] = {}  # job id -> last error logged, so a repeat is not logged again
        self.in_job = False
        self.stopping = False
        self.epsilon_cap = epsilon_cap

    # Signals: inside a release the first one lets the job finish; otherwise (or a second time) stop now.
    def on_signal(self, signum, frame) -> None:
        if self.in_job and not self.stopping:
            self.stopping = True
            return
        self.stopping = True
        raise _Stop()

    def _signature(self, path) -> tuple | None:
        try:
            st = path.stat()
        except OSError:
            return None
        return (st.st_size, st.st_mtime_ns, st.st_ino)

    def context_for(self, bundle_id: str):
        """The secret context of a bundle; None (reported once) if the keystore has no usable key.

        Returns ``(context, missing)``: ``missing`` is True when the key file does not exist (a skip),
        False when it exists but cannot be used (a failure).
        """
        if bundle_id in self.contexts:
            return self.contexts[bundle_id], False
        path = self.he.secret_key_path(bundle_id, self.keystore)
        signature = self._signature(path)
        if signature is None:
            if self.unavailable.get(bundle_id) != ("missing", None):
                self.unavailable[bundle_id] = ("missing", None)
                self.log.warning("no key for bundle %s in keystore; skipping its jobs", bundle_id)
            return None, True
        previous = self.unavailable.get(bundle_id)
        if previous is not None and previous == ("unusable", signature):
            return None, False
        try:
            context = self.he.load_secret_context(bundle_id, self.keystore)
        except Exception as exc:
            self.unavailable[bundle_id] = ("unusable", signature)
            reason = "; ".join(exc.problems) if isinstance(exc, self.he.HEError) else type(exc).__name__
            self.log.error("the key file of bundle %s cannot be used (%s); skipping its jobs", bundle_id, reason)
            return None, False
        if previous is not None:
            self.log.info("found the key of bundle %s", bundle_id)
        self.unavailable.pop(bundle_id, None)
        self.contexts[bundle_id] = context
        return context, False

    def _failed(self, job, message: str) -> str:
        if self.failures.get(job) != message:
            self.failures[job] = message
            self.log.error("job %s: %s", job, message)
        else:
            self.log.debug("job %s: still failing: %s", job, message)
        return "failed"

    def handle(self, plan) -> str:
        """Release one job; returns "released", "skipped" or "failed"."""
        import requests

        from cloakroom_client.release import EpsilonLedger, ReleaseError, check_plan, release_job

        job = plan.get("job") if isinstance(plan, dict) else None
        try:
            check_plan(plan)
        except ReleaseError as exc:
            return self._failed(job, f"refused its plan: {exc}")
        context, missing = self.context_for(plan["bundle_id"])
        if context is None:
            return "skipped" if missing else "failed"
        bundle_id = plan["bundle_id"]
        try:
            manifest = self.he.load_local_manifest(bundle_id, self.keystore)
        except self.he.HEError as exc:
            return self._failed(job, f"refused: {exc}")
        cap = self.epsilon_cap if self.epsilon_cap is not None else self.he.load_epsilon_cap(bundle_id, self.keystore)
        ledger = EpsilonLedger(self.he.ledger_path(bundle_id, self.keystore), cap)
        try:
            released = release_job(self.client, plan, context, manifest=manifest, drawn=self.drawn, ledger=ledger)
        except CloakroomError as exc:
            if exc.status == 404 or exc.code == "job_not_awaiting_key":
                self.drawn.pop(job, None)
                self.failures.pop(job, None)
                self.log.warning("job %s no longer waits for a key (%s %s); skipped", job, exc.status, exc.code)
                return "skipped"
            detail = f"{exc.status} {exc.code}: {exc.message}"
            if exc.fields:
                detail += (
                    " ("
                    + "; ".join(
                        f"{k}: {', '.join(map(str, v if isinstance(v, list) else [v]))}" for k, v in exc.fields.items()
                    )
                    + ")"
                )
            return self._failed(job, f"release failed: {detail}")
        except ReleaseError as exc:
            return self._failed(job, f"release refused: {exc}")
        except requests.RequestException as exc:
            return self._failed(job, f"could not reach the server: {type(exc).__name__}")
        except Exception as exc:  # one bad job must not stop the agent
            return self._failed(job, f"release failed: {type(exc).__name__}")
        self.failures.pop(job, None)
        values = ", ".join(f"{name}={_format_value(value)}" for name, value in released.values.items())
        self.log.info("released job %s (%s): %s", job, _describe_query(plan.get("query")), values)
        return "released"

    def run_pass(self) -> bool:
        """List the awaiting jobs and release each; True when none failed."""
        ok = True
        plans = self.client.awaiting_jobs()
        listed = {plan.get("job") for plan in plans if isinstance(plan, dict)}
        for job in [job for job in self.failures if job not in listed]:
            del self.failures[job]  # released or cancelled elsewhere: forget its last error
        for plan in plans:
            if self.stopping:
                break
            self.in_job = True
            try:
                ok = self.handle(plan) != "failed" and ok
            finally:
                self.in_job = False
        return ok

    def run(self, *, interval: float, once: bool, url: str) -> int:
        self.log.info(
            "key agent started: %s, keystore %s, %s",
            url,
            self.keystore,
            "one pass" if once else f"polling every {interval:g}s",
        )
        handlers = {}
        for signum in (signal.SIGINT, signal.SIGTERM):
            try:
                handlers[signum] = signal.signal(signum, self.on_signal)
            except ValueError:  # not the main thread: Ctrl-C still arrives as KeyboardInterrupt
                pass
        code = 0
        try:
            while not self.stopping:
                try:
                    ok = self.run_pass()
                except _Stop:
                    raise
                except CloakroomError as exc:
                    self.log.error(
                        "could not list the jobs waiting for a key: %s %s: %s", exc.status, exc.code, exc.message
                    )
                    if exc.status in (401, 403):
                        return 1  # a refused API key will not fix itself
                    ok = False
                except Exception as exc:
                    self.log.error("could not list the jobs waiting for a key: %s", type(exc).__name__)
                    ok = False
                if once:
                    code = 0 if ok else 1
                    break
                if self.stopping:
                    break
                time.sleep(interval)
        except (_Stop, KeyboardInterrupt):
            self.stopping = True
        finally:
            for signum, previous in handlers.items():
                signal.signal(signum, previous)
        if self.stopping:
            self.log.info("key agent stopped")
        return code


def _agent_logger() -> logging.Logger:
    log = logging.getLogger(AGENT_LOGGER)
    for handler in list(log.handlers):
        if getattr(handler, "_cloakroom_cli", False):
            log.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    handler._cloakroom_cli = True
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False
    return log


def _key_agent(args: argparse.Namespace, client: Client) -> int:
    log = _agent_logger()
    if not args.api_key:
        log.error("the key agent needs an API key of the datasets' owner (--api-key or CLOAKROOM_API_KEY)")
        return 1
    try:
        import cloakroom_client.he  # noqa: F401  (TenSEAL)
    except ImportError as exc:
        log.error("the key agent needs TenSEAL (pip install tenseal): %s", exc)
        return 1
    return KeyAgent(client, args.keystore, log, args.epsilon_cap).run(
        interval=args.interval, once=args.once, url=client.url
    )


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    client = Client(args.url, args.api_key)
    if args.command == "key-agent":
        return _key_agent(args, client)
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
        elif args.command == "he" and args.he_command == "escrow":
            return _he_escrow(args, client)
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
