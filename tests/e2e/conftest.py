"""Browser tests: Playwright driving Debian's Chromium against a live gunicorn and a real Celery
worker, on the PostgreSQL database pytest-django made for this run and on Redis.

The processes are started once per test session (per xdist worker) with the helpers of
tests/integration/live.py. Every test is ``transaction=True``: what the browser creates through
gunicorn is committed, and the database is emptied after each test, so journeys never see each
other's users or datasets (each module sets ``pytestmark = E2E`` from tests.e2e.helpers). Queues carry a tag of this session's own, so parallel runs sharing a
Redis database never take each other's jobs.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

from tests.e2e.helpers import CHROMIUM, CHROMIUM_ARGS, DESKTOP, LiveSite
from tests.integration.live import (
    ProcessPool,
    celery_worker_args,
    live_database_url,
    run_manage,
    site_env,
    start_web,
    worker_is_ready,
)

# How long the worker sleeps after claiming a job, so that a page can be seen while the job is
# still running and then watched as it changes by itself (the settings' fault-injection knob).
JOB_DELAY_SECONDS = "3"


@pytest.fixture(scope="session")
def live_site(django_db_setup, django_db_blocker, tmp_path_factory) -> LiveSite:
    """gunicorn and one Celery worker (queues of this session's own) on the test database."""
    redis_url = os.environ.get("CELERY_BROKER_URL") or os.environ.get("REDIS_URL")
    assert redis_url and redis_url.startswith("redis"), "the browser tests need Redis (set REDIS_URL)"
    with django_db_blocker.unblock():
        database_url = live_database_url()
    root = tmp_path_factory.mktemp("e2e")
    tag = uuid.uuid4().hex[:8]
    env = site_env(root, tag, DATABASE_URL=database_url, REDIS_URL=redis_url, CELERY_BROKER_URL=redis_url)
    # Production settings (no DEBUG) serve hashed static files that collectstatic writes.
    result = run_manage(["collectstatic", "--noinput", "--verbosity", "0"], env)
    assert result.returncode == 0, result.stdout + result.stderr

    pool = ProcessPool(log_dir=tmp_path_factory.mktemp("e2e-logs"))
    try:
        url = start_web(pool, env)
        worker = pool.start(
            "celery-worker",
            celery_worker_args(queues=f"dp-{tag},he-{tag},keys-{tag},ml-{tag},default", name=f"e2e-{tag}", pool="solo"),
            {**env, "CLOAKROOM_FAULT_JOB_DELAY_SECONDS": JOB_DELAY_SECONDS},
        )
        pool.wait_until("the Celery worker to be ready", lambda: worker_is_ready(worker), timeout=60)
        yield LiveSite(url=url, pool=pool, env=env)
    finally:
        pool.stop_all()
        # pytest shows this only for a failing test, which is when the logs are wanted.
        print(pool.logs())


@pytest.fixture(scope="module")
def browser():
    """Chromium for one test module. Playwright's synchronous API keeps an asyncio event loop running
    in this thread while it is open, and Django refuses ORM calls (pytest-django's database set-up
    and flush among them) while a loop runs unless told the caller is synchronous, which it is. So
    the browser lives for one module only, and the flag with it: later tests keep Django's check."""
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: run `bash scripts/ensure_browser.sh` (make test does).")
    from playwright.sync_api import sync_playwright

    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with sync_playwright() as playwright:
            chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                yield chromium
            finally:
                chromium.close()
    finally:
        if previous is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


@pytest.fixture
def new_page(browser, live_site, request, tmp_path):
    """``new_page(width=1280, height=800)``: a page in a fresh browser context (its own cookies).
    A failing test leaves a screenshot of every page it opened in its tmp_path."""
    contexts = []

    def make(width: int = DESKTOP[0], height: int = DESKTOP[1]):
        context = browser.new_context(
            base_url=live_site.url, viewport={"width": width, "height": height}, accept_downloads=True
        )
        context.set_default_timeout(15_000)
        contexts.append(context)
        return context.new_page()

    yield make
    failed = getattr(request.node, "rep_call", None) is not None and request.node.rep_call.failed
    for i, context in enumerate(contexts):
        if failed:
            for j, page in enumerate(context.pages):
                try:
                    page.screenshot(path=str(tmp_path / f"failure-{i}-{j}.png"), full_page=True)
                    print(f"screenshot of {page.url}: {tmp_path / f'failure-{i}-{j}.png'}")
                except Exception:  # a broken page must not hide the test's own error
                    pass
        context.close()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.when == "call":
        item.rep_call = report
