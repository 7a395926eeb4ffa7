"""Issue 11, defect 9: a Content-Security-Policy on every response (config/middleware.py), templates
free of inline code it would block, and (defect 4) gunicorn's explicit --timeout wherever it runs.
The browser side (Chromium loading the pages, htmx and Swagger UI under the policy) is in
tests/integration/test_hardening_csp_browser.py."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import yaml
from django.conf import settings
from django.test import Client, override_settings

from config.middleware import HEADER, REPORT_ONLY_HEADER, csp_hash, inline_hashes, render_policy

pytestmark = pytest.mark.django_db
REPO_ROOT = Path(__file__).resolve().parents[2]
POLICY = render_policy(settings.CONTENT_SECURITY_POLICY)


def directives(header: str) -> dict[str, list[str]]:
    out = {}
    for part in header.split(";"):
        name, *sources = part.split()
        out[name] = sources
    return out


def test_the_policy_allows_this_origin_only_and_nothing_inline():
    policy = directives(POLICY)
    assert policy["default-src"] == ["'self'"]
    assert policy["script-src"] == ["'self'"] and policy["style-src"] == ["'self'"]
    assert policy["object-src"] == ["'none'"] and policy["frame-ancestors"] == ["'none'"]
    assert policy["base-uri"] == ["'none'"] and policy["form-action"] == ["'self'"]
    assert not any("unsafe" in source or "*" in source for sources in policy.values() for source in sources)


@pytest.mark.parametrize(
    "path",
    ["/", "/accounts/login/", "/accounts/signup/", "/privacy/", "/admin/login/", "/no-such-page/", "/api/v1/datasets/"],
)
def test_every_response_carries_the_policy(path):
    response = Client().get(path)
    assert response[HEADER] == POLICY, path


def test_a_logged_in_page_and_an_api_error_carry_it_too(buyer, buyer_client):
    client = Client()
    client.force_login(buyer)
    assert client.get("/jobs/")[HEADER] == POLICY
    assert buyer_client.get("/api/v1/jobs/99999/").status_code == 404
    assert buyer_client.get("/api/v1/jobs/99999/")[HEADER] == POLICY


def test_the_swagger_page_allows_exactly_its_own_inline_script_and_style(buyer):
    client = Client()
    client.force_login(buyer)  # the inline script carries this visitor's CSRF token
    response = client.get("/api/docs/")
    assert response.status_code == 200
    policy = directives(response[HEADER])
    html = response.content
    scripts = re.findall(rb"<script>(.*?)</script>", html, re.S)
    styles = re.findall(rb"<style>(.*?)</style>", html, re.S)
    assert len(scripts) == 1 and len(styles) == 1
    assert policy["script-src"] == ["'self'", csp_hash(scripts[0])]
    assert policy["style-src"] == ["'self'", csp_hash(styles[0])]
    # Everything else is the site's policy, and the other pages get no hashes.
    assert {k: v for k, v in policy.items() if k not in ("script-src", "style-src")} == {
        k: v for k, v in directives(POLICY).items() if k not in ("script-src", "style-src")
    }
    assert "sha256" not in Client().get("/")[HEADER]


def test_inline_hashes_skip_external_scripts():
    html = b'<script src="/static/a.js"></script><script>go()</script><style>p{}</style>'
    assert inline_hashes(html) == {"script-src": [csp_hash(b"go()")], "style-src": [csp_hash(b"p{}")]}


def test_report_only_sends_the_other_header(settings):
    settings.CSP_REPORT_ONLY = True
    response = Client().get("/")
    assert response[REPORT_ONLY_HEADER] == POLICY and HEADER not in response


@override_settings(DEBUG=False)
def test_a_response_with_its_own_policy_keeps_it(monkeypatch):
    from django.http import HttpResponse
    from django.test import RequestFactory

    from config.middleware import ContentSecurityPolicyMiddleware

    own = HttpResponse("x")
    own[HEADER] = "default-src 'none'"
    middleware = ContentSecurityPolicyMiddleware(lambda request: own)
    assert middleware(RequestFactory().get("/"))[HEADER] == "default-src 'none'"


TEMPLATE_DIRS = [REPO_ROOT / "templates"] + [
    REPO_ROOT / app / "templates"
    for app in ("accounts", "marketplace", "compute")
    if (REPO_ROOT / app / "templates").is_dir()
]
INLINE_CODE = [
    (re.compile(r"<script(?![^>]*\ssrc=)[^>]*>", re.I), "an inline <script>"),
    (re.compile(r"<style[\s>]", re.I), "a <style> element"),
    (re.compile(r"\sstyle\s*=", re.I), "a style= attribute"),
    (re.compile(r"\son[a-z]+\s*=", re.I), "an on...= handler"),
    (re.compile(r"=\s*[\"']?\s*javascript:", re.I), "a javascript: URL"),
    (re.compile(r"\shx-on", re.I), "an hx-on handler (htmx runs it with the Function constructor)"),
]


def test_no_template_holds_code_the_policy_would_block():
    offences = []
    for folder in TEMPLATE_DIRS:
        for path in folder.rglob("*.html"):
            text = path.read_text()
            for pattern, what in INLINE_CODE:
                for match in pattern.finditer(text):
                    line = text.count("\n", 0, match.start()) + 1
                    offences.append(f"{path.relative_to(REPO_ROOT)}:{line}: {what}")
    assert offences == []


def _timeout(args: list[str]) -> str | None:
    return args[args.index("--timeout") + 1] if "--timeout" in args else None


def test_gunicorn_has_an_explicit_timeout_in_the_procfile_compose_and_the_dockerfile():
    procfile = dict(
        line.split(":", 1) for line in (REPO_ROOT / "Procfile").read_text().splitlines() if line[:1].isalpha()
    )
    assert _timeout(shlex.split(procfile["web"])) == "60"

    compose = yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text())
    command = compose["services"]["web"]["command"]
    script = command[-1] if isinstance(command, list) else command
    assert _timeout(shlex.split(script.split("exec", 1)[1])) == "60"

    cmd = next(line for line in (REPO_ROOT / "Dockerfile").read_text().splitlines() if line.startswith("CMD "))
    args = yaml.safe_load(cmd[4:])
    assert args[0] == "gunicorn" and _timeout(args) == "60"
