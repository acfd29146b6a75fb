"""Which URL the web endpoint has, and whether it goes into List-Unsubscribe (SPEC §3)."""

from __future__ import annotations

from listserv.config import Settings


def public_url(settings: Settings, bound_port: int | None = None) -> str:
    """The URL links in mail point at: `[web] base_url`, else the endpoint's own
    `http://host:PORT` (`bound_port` when the port was 0); "" when the endpoint is off, or
    when its port is not known (the command line, with `port = 0` and no `base_url`)."""
    web = settings.web
    if not web.enabled:
        return ""
    if web.base_url:
        return web.base_url
    port = bound_port if bound_port is not None else web.port
    if not port:
        return ""
    host = f"[{web.host}]" if ":" in web.host else web.host
    return f"http://{host}:{port}"


def one_click_base(settings: Settings) -> str:
    """The base of the personalised copies' one-click List-Unsubscribe URL, or "" when the
    copies carry only the mailto.

    The one place that decides it (SPEC §3, RFC 8058): the endpoint is on, its public URL is
    `https://` (mailbox providers post only to HTTPS), and DKIM signing is on (RFC 8058 §4:
    the signature must cover both headers, or receivers ignore the one-click URL).
    """
    web = settings.web
    if web.enabled and web.base_url.startswith("https://") and settings.dkim.enabled:
        return web.base_url
    return ""
