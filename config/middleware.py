"""Content-Security-Policy on every response.

Every script, style sheet, image and font of the site is served from its own origin (the vendored
Pico CSS and htmx, the site's own CSS, drf-spectacular-sidecar's Swagger UI, Django admin), and no
template carries inline script or style, so the policy allows ``'self'`` and nothing inline. Pico's
form controls draw their icons as ``data:`` SVG images, hence ``img-src 'self' data:``. htmx 4
adds its indicator styles as a constructed style sheet, which CSP does not govern, and the pages use
no ``hx-on`` handlers or trigger filters, which htmx would run through the Function constructor
(``'unsafe-eval'``).

One page renders inline code that no static file can replace: drf-spectacular's Swagger UI page
(``/api/docs/``) writes its start-up script inline, with the visitor's CSRF token in it, so its hash
differs from visitor to visitor. For the paths in ``CSP_HASH_INLINE_PATHS`` the middleware hashes the
inline ``<script>`` and ``<style>`` elements of that response, which its trusted view rendered from
settings (and request values it escapes), and allows exactly those, for that response only. Serving
the page with ``SpectacularSwaggerSplitView`` (its script as a separate request) would leave only
the page's fixed ``<style>`` element to allow.

Settings: ``CONTENT_SECURITY_POLICY`` (directive -> sources), ``CSP_HASH_INLINE_PATHS`` and
``CSP_REPORT_ONLY`` (send ``Content-Security-Policy-Report-Only`` instead, to try a policy out).
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse

HEADER = "Content-Security-Policy"
REPORT_ONLY_HEADER = "Content-Security-Policy-Report-Only"
# Inline elements: an opening tag (no src= for scripts), its text, the closing tag.
_INLINE = re.compile(rb"<(script|style)(\s[^>]*)?>(.*?)</\1\s*>", re.S | re.I)
_SRC = re.compile(rb"\ssrc\s*=", re.I)


def csp_hash(text: bytes) -> str:
    """The CSP source expression that allows an inline element whose text is ``text``."""
    return "'sha256-" + base64.b64encode(hashlib.sha256(text).digest()).decode() + "'"


def inline_hashes(html: bytes) -> dict[str, list[str]]:
    """Hashes of the inline scripts and style elements of an HTML document, by directive."""
    found: dict[str, list[str]] = {"script-src": [], "style-src": []}
    for tag, attrs, text in _INLINE.findall(html):
        if tag.lower() == b"script":
            if attrs and _SRC.search(attrs):
                continue
            found["script-src"].append(csp_hash(text))
        else:
            found["style-src"].append(csp_hash(text))
    return found


def render_policy(policy: dict[str, list[str]], extra: dict[str, list[str]] | None = None) -> str:
    parts = []
    for directive, sources in policy.items():
        sources = list(sources) + [s for s in (extra or {}).get(directive, []) if s not in sources]
        parts.append(" ".join([directive, *sources]) if sources else directive)
    return "; ".join(parts)


class ContentSecurityPolicyMiddleware:
    """Adds the site's Content-Security-Policy to every response that has none of its own."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response
        self.policy: dict[str, list[str]] = dict(settings.CONTENT_SECURITY_POLICY)
        self.header_value = render_policy(self.policy)
        self.header = REPORT_ONLY_HEADER if getattr(settings, "CSP_REPORT_ONLY", False) else HEADER
        self.hash_paths = tuple(getattr(settings, "CSP_HASH_INLINE_PATHS", ()))

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if HEADER in response or REPORT_ONLY_HEADER in response:
            return response
        value = self.header_value
        if request.path in self.hash_paths and self._is_html(response):
            value = render_policy(self.policy, inline_hashes(response.content))
        response[self.header] = value
        return response

    @staticmethod
    def _is_html(response: HttpResponse) -> bool:
        return not getattr(response, "streaming", False) and response.get("Content-Type", "").startswith("text/html")
