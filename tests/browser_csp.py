"""Browser tests under the Content-Security-Policy the app is meant to send: no inline script or style."""

from __future__ import annotations

STRICT_CSP = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:"


def enforce_strict_csp(page, base_url: str) -> list[str]:
    """Serve the app's pages to ``page`` with STRICT_CSP (added here, whatever the server sends) and
    return the list that collects what the browser refused: an inline handler, a ``<script>`` block,
    a ``style`` attribute. A test asserts the list is empty once its page has done its work."""
    refused: list[str] = []

    def with_csp(route):
        response = route.fetch(max_redirects=0)  # the browser follows a redirect itself (its address changes)
        headers = {**response.headers, "content-security-policy": STRICT_CSP}
        route.fulfill(response=response, headers=headers)

    page.route(lambda url: url.startswith(base_url) and "/static/" not in url and "/media/" not in url, with_csp)
    page.on("console", lambda message: refused.append(message.text)
            if "Content Security Policy" in message.text else None)
    return refused
