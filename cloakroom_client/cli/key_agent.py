"""The ``cloakroom key-agent`` command: the owner's key agent, which releases the HE jobs on the
owner's datasets that wait for the owner's key.

For each job it checks the server's release spec, loads the bundle's secret key from the keystore,
releases the job with :func:`cloakroom_client.release.release_job` (decrypt here, add the noise the
key holder's own plan sets, post only the noisy values) and keeps its own ledger of the epsilon
released. The key and the un-noised values never leave this machine.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import time
from decimal import Decimal, InvalidOperation
from typing import Any

import requests

from cloakroom_client import he
from cloakroom_client.cli.tables import describe_query
from cloakroom_client.client import Client, CloakroomError
from cloakroom_client.protocol.errors import ReleaseError
from cloakroom_client.protocol.release_spec import check_release_spec
from cloakroom_client.release import EpsilonLedger, release_job


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


def add_commands(sub: Any) -> None:
    """Add ``key-agent`` to ``sub``, the subparsers of the ``cloakroom`` parser."""
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


AGENT_LOGGER = "cloakroom.key_agent"


class _Stop(Exception):
    """Raised by the signal handler to stop the agent where it stands (never inside a release)."""


class _KeyRefused(Exception):
    """The server refused the API key: polling again cannot succeed, so the agent exits with 1."""


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
        self.client = client
        self.keystore = he.keystore_dir(keystore)
        self.log = log
        self.contexts: dict = {}
        self.unavailable: dict[str, tuple] = {}  # bundle id -> (kind, file signature) already reported
        self.drawn: dict = {}  # job id -> (release spec fingerprint, noisy values) of a failed release
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
        path = he.secret_key_path(bundle_id, self.keystore)
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
            context = he.load_secret_context(bundle_id, self.keystore)
        # An unreadable file (OSError), or bytes TenSEAL cannot parse (ValueError, RuntimeError, TypeError).
        except (he.HEError, OSError, ValueError, RuntimeError, TypeError) as exc:
            self.unavailable[bundle_id] = ("unusable", signature)
            reason = "; ".join(exc.problems) if isinstance(exc, he.HEError) else type(exc).__name__
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

    def handle(self, spec) -> str:
        """Release one job from its release spec; returns "released", "skipped" or "failed"."""
        job = spec.get("job") if isinstance(spec, dict) else None
        try:
            check_release_spec(spec)
        except ReleaseError as exc:
            return self._failed(job, f"refused its plan: {exc}")
        context, missing = self.context_for(spec["bundle_id"])
        if context is None:
            return "skipped" if missing else "failed"
        bundle_id = spec["bundle_id"]
        try:
            manifest = he.load_local_manifest(bundle_id, self.keystore)
        except he.HEError as exc:
            return self._failed(job, f"refused: {exc}")
        cap = self.epsilon_cap if self.epsilon_cap is not None else he.load_epsilon_cap(bundle_id, self.keystore)
        ledger = EpsilonLedger(he.ledger_path(bundle_id, self.keystore), cap)
        try:
            released = release_job(self.client, spec, context, manifest=manifest, drawn=self.drawn, ledger=ledger)
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
        except Exception as exc:  # noqa: BLE001 (one bad job must not stop the agent)
            return self._failed(job, f"release failed: {type(exc).__name__}")
        self.failures.pop(job, None)
        values = ", ".join(f"{name}={_format_value(value)}" for name, value in released.values.items())
        self.log.info("released job %s (%s): %s", job, describe_query(spec.get("query")), values)
        return "released"

    def run_pass(self) -> bool:
        """List the awaiting jobs and release each; True when none failed."""
        ok = True
        specs = self.client.awaiting_jobs()
        listed = {spec.get("job") for spec in specs if isinstance(spec, dict)}
        for job in [job for job in self.failures if job not in listed]:
            del self.failures[job]  # released or cancelled elsewhere: forget its last error
        for spec in specs:
            if self.stopping:
                break
            self.in_job = True
            try:
                ok = self.handle(spec) != "failed" and ok
            finally:
                self.in_job = False
        return ok

    def poll(self) -> bool:
        """One pass; True when no job failed. A failure to list the jobs is logged and counts as failed."""
        try:
            return self.run_pass()
        except _Stop:
            raise
        except CloakroomError as exc:
            self.log.error("could not list the jobs waiting for a key: %s %s: %s", exc.status, exc.code, exc.message)
            if exc.status in (401, 403):
                raise _KeyRefused() from None
            return False
        except Exception as exc:  # noqa: BLE001 (the agent keeps polling after any failure of one pass)
            self.log.error("could not list the jobs waiting for a key: %s", type(exc).__name__)
            return False

    def poll_until_stopped(self, *, interval: float, once: bool) -> int:
        """Poll every ``interval`` seconds until a signal; with ``once``, one pass (1 if a job failed)."""
        while not self.stopping:
            ok = self.poll()
            if once:
                return 0 if ok else 1
            if self.stopping:
                break
            time.sleep(interval)
        return 0

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
            code = self.poll_until_stopped(interval=interval, once=once)
        except _KeyRefused:
            return 1  # a refused API key will not fix itself
        except (_Stop, KeyboardInterrupt):
            self.stopping = True
        finally:
            for signum, previous in handlers.items():
                signal.signal(signum, previous)
        if self.stopping:
            self.log.info("key agent stopped")
        return code


class _AgentHandler(logging.StreamHandler):
    """The handler this command puts on the agent's logger, told apart so a second run replaces it."""


def _agent_logger() -> logging.Logger:
    log = logging.getLogger(AGENT_LOGGER)
    for handler in list(log.handlers):
        if isinstance(handler, _AgentHandler):
            log.removeHandler(handler)
    handler = _AgentHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False
    return log


def run(args: argparse.Namespace, client: Client) -> int:
    log = _agent_logger()
    if not args.api_key:
        log.error("the key agent needs an API key of the datasets' owner (--api-key or CLOAKROOM_API_KEY)")
        return 1
    try:
        # Imported here only to check, before the first poll, that the "he" extra is installed:
        # without it the agent says so in one sentence instead of failing on its first job.
        import tenseal  # noqa: F401
    except ImportError as exc:
        log.error("the key agent needs TenSEAL (pip install tenseal): %s", exc)
        return 1
    return KeyAgent(client, args.keystore, log, args.epsilon_cap).run(
        interval=args.interval, once=args.once, url=client.url
    )
