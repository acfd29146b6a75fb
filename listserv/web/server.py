"""The HTTP endpoint (aiohttp) on the daemon's asyncio loop: `/u/TOKEN` and `/c/TOKEN`.

Every database step runs in a thread (`asyncio.to_thread`), in a unit of work of its own, so
the loop that also serves LMTP and SMTP never blocks on the store; a step that queued mail
wakes the delivery workers. Tokens are secrets: no access log is kept (it would hold them),
and no page is cached. `GET` never changes anything (link scanners fetch links in mail).

The confirmation pages carry a form token against cross-site posts: a random value set as a
`SameSite=Strict`, `HttpOnly` cookie with the page and repeated in its form; a `POST` whose
two values differ completes nothing and shows the page again. The one-click `POST /u/TOKEN`
has none by design (RFC 8058: mailbox providers post with no cookie; the token is the proof).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Awaitable, Callable
from typing import TypeVar
from urllib.parse import urlsplit

from aiohttp import web
from sqlalchemy.orm import Session

from listserv.clock import Clock
from listserv.config import Settings
from listserv.mail.links import CONFIRM_PATH, UNSUBSCRIBE_PATH
from listserv.mail.render import Renderer
from listserv.store.engine import Store
from listserv.web import actions
from listserv.web.actions import Page
from listserv.web.pages import Pages, choose_language

log = logging.getLogger(__name__)
T = TypeVar("T")

#: Sent with every answer: no framing, no referrer (the URL holds a token), no sniffing, no
#: script or anything else from anywhere; forms post only back to us.
SECURITY_HEADERS = {
    "Content-Security-Policy": ("default-src 'none'; style-src 'self'; form-action 'self'; "
                                "base-uri 'none'; frame-ancestors 'none'"),
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Cross-Origin-Opener-Policy": "same-origin",
}
#: The cookie half of the confirmation pages' form token.
FORM_COOKIE = "listserv_form"
#: The form field of RFC 8058's one-click POST, and its one value.
ONE_CLICK_FIELD, ONE_CLICK_VALUE = "List-Unsubscribe", "One-Click"
#: Bodies are a form field or two; anything larger is refused (413) before it is read.
MAX_BODY = 64 * 1024


class WebEndpoint:
    """The endpoint of one daemon: `start()` on its loop returns the bound port; `stop()`."""

    def __init__(self, settings: Settings, store: Store, renderer: Renderer, clock: Clock,
                 wake: Callable[[], None]) -> None:
        """`renderer` renders the mail a click causes; `wake` tells the delivery workers that
        mail was queued."""
        self.settings = settings
        self.store = store
        self.renderer = renderer
        self.clock = clock
        self.wake = wake
        self.pages = Pages(settings.templates_dir)
        base = settings.web.base_url
        # Behind a reverse proxy the browser sees the base URL's path before /c/.
        self.cookie_path = (urlsplit(base).path if base else "") + CONFIRM_PATH
        self.secure_cookie = base.startswith("https://")
        self._runner: web.AppRunner | None = None

    def application(self) -> web.Application:
        """The aiohttp application: the routes and the middleware that adds the headers."""

        @web.middleware
        async def headers(request: web.Request,
                          handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                          ) -> web.StreamResponse:
            try:
                response = await handler(request)
            except web.HTTPNotFound:
                response = self._page(request, actions.NOT_FOUND)
            except web.HTTPException as exc:
                response = web.Response(status=exc.status, text=exc.reason + "\n")
            except Exception:
                log.exception("web endpoint: %s %s failed", request.method,
                              request.path.split("/")[1:2])
                response = self._page(request, Page("error.html", 500))
            response.headers.update(SECURITY_HEADERS)
            response.headers.setdefault("Cache-Control", "no-store")
            return response

        app = web.Application(middlewares=[headers], client_max_size=MAX_BODY)
        app.router.add_get(UNSUBSCRIBE_PATH + "{token}", self.unsubscribe_page)
        app.router.add_post(UNSUBSCRIBE_PATH + "{token}", self.one_click)
        app.router.add_get(CONFIRM_PATH + "{token}", self.confirmation_page)
        app.router.add_post(CONFIRM_PATH + "{token}", self.confirm)
        app.router.add_get("/style.css", self.stylesheet)
        return app

    async def start(self) -> int:
        """Listen on `[web] host:port`; returns the bound port (`port = 0`: a free one).
        Raises OSError when the address cannot be bound."""
        # A stop waits at most a few seconds for answers under way (each is one short step).
        runner = web.AppRunner(self.application(), access_log=None, handle_signals=False,
                               shutdown_timeout=5.0)
        await runner.setup()
        site = web.TCPSite(runner, self.settings.web.host, self.settings.web.port)
        try:
            await site.start()
        except OSError:
            await runner.cleanup()
            raise
        self._runner = runner
        return int(runner.addresses[0][1])

    async def stop(self) -> None:
        """Stop listening and finish the answers under way."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # -- the routes ------------------------------------------------------------------------

    async def unsubscribe_page(self, request: web.Request) -> web.Response:
        """`GET /u/TOKEN`: one button; nothing changes."""
        token = request.match_info["token"]
        return self._page(request, await self._reading(
            lambda session: actions.unsubscribe_page(session, token)))

    async def one_click(self, request: web.Request) -> web.Response:
        """`POST /u/TOKEN` with `List-Unsubscribe=One-Click`: unsubscribe at once."""
        token = request.match_info["token"]
        if not await self._says_one_click(request):
            # Not RFC 8058's body: show the page with the button instead (nothing changes).
            page = await self._reading(lambda session: actions.unsubscribe_page(session, token))
            return self._page(request, Page(page.template, 400 if page.status == 200
                                            else page.status, page.lang, page.values))
        lang = choose_language("", request.headers.get("Accept-Language", ""))
        page = await self._writing(lambda session: actions.one_click(
            session, self.renderer, token, self.clock.now(), lang))
        return self._page(request, page)

    async def confirmation_page(self, request: web.Request) -> web.Response:
        """`GET /c/TOKEN`: what confirming does, and the button; nothing changes."""
        token = request.match_info["token"]
        page = await self._reading(
            lambda session: actions.confirmation_page(session, token, self.clock.now()))
        return self._form_page(request, page)

    async def confirm(self, request: web.Request) -> web.Response:
        """`POST /c/TOKEN`: complete the confirmation, if the form token matches."""
        token = request.match_info["token"]
        form = await request.post()
        sent = str(form.get("form_token", ""))
        kept = request.cookies.get(FORM_COOKIE, "")
        if not sent or not secrets.compare_digest(sent.encode(), kept.encode()):
            page = await self._reading(
                lambda session: actions.confirmation_page(session, token, self.clock.now()))
            if page.template == "confirm.html":
                page = Page(page.template, 403, page.lang, {**page.values, "notice": True})
            return self._form_page(request, page)
        page = await self._writing(
            lambda session: actions.confirm(session, self.renderer, token, self.clock.now()))
        return self._page(request, page)

    async def stylesheet(self, request: web.Request) -> web.Response:
        """The pages' one stylesheet (cacheable: it holds no token)."""
        return web.Response(text=self.pages.stylesheet(), content_type="text/css",
                            headers={"Cache-Control": "public, max-age=3600"})

    # -- helpers ---------------------------------------------------------------------------

    @staticmethod
    async def _says_one_click(request: web.Request) -> bool:
        form = await request.post()
        if form.get(ONE_CLICK_FIELD) == ONE_CLICK_VALUE:
            return True
        # A client that posts the body without a form content type still means it.
        body = (await request.text()).strip()
        return body == f"{ONE_CLICK_FIELD}={ONE_CLICK_VALUE}"

    def _page(self, request: web.Request, page: Page, **extra: object) -> web.Response:
        lang = choose_language(page.lang, request.headers.get("Accept-Language", ""))
        response = web.Response(text=self.pages.render(page, lang, **extra),
                                status=page.status, content_type="text/html")
        response.headers["Content-Language"] = lang
        return response

    def _form_page(self, request: web.Request, page: Page) -> web.Response:
        """A confirmation page with a fresh form token (cookie and hidden field)."""
        if page.template != "confirm.html":
            return self._page(request, page)
        nonce = secrets.token_urlsafe(24)
        response = self._page(request, page, form_token=nonce)
        response.set_cookie(FORM_COOKIE, nonce, path=self.cookie_path, httponly=True,
                            samesite="Strict", secure=self.secure_cookie)
        return response

    async def _reading(self, step: Callable[[Session], T]) -> T:
        def run() -> T:
            with self.store.reading() as session:
                return step(session)

        return await asyncio.to_thread(run)

    async def _writing(self, step: Callable[[Session], T]) -> T:
        def run() -> T:
            with self.store.unit_of_work() as session:
                return step(session)

        result = await asyncio.to_thread(run)
        self.wake()
        return result
