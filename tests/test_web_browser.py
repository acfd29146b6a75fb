"""A real browser on the confirmation page (SPEC §3): headless Debian chromium, driven through
chromium-driver by Selenium, opens the link from the join confirmation in the sink, presses
the button with the keyboard and sees the welcome page; the person is then a member.

Without chromium and its driver the test skips with the reason, except under
LISTSERV_REQUIRE_BROWSER=1 (set by .ci/run, which installs both), where it fails.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NoReturn

import pytest
from sqlalchemy import select

from listserv.store.models.core import Member

from .helpers import lmtp_send, make_message, wait_mail, wait_until
from .smtp_sink import SmtpSink
from .web_helpers import confirm_link_in, write_web_config

pytestmark = pytest.mark.slow

JANE = "jane@example.org"
BROWSER = ("chromium", "/usr/bin/chromium")
DRIVER = ("chromedriver", "/usr/bin/chromedriver")
INSTALL_HINT = "apt-get install chromium chromium-driver"


def _unavailable(reason: str) -> NoReturn:
    if os.environ.get("LISTSERV_REQUIRE_BROWSER") == "1":
        pytest.fail(reason)
    pytest.skip(reason)


def _found(names: tuple[str, str]) -> str | None:
    return shutil.which(names[0]) or (names[1] if Path(names[1]).exists() else None)


@pytest.fixture
def browser() -> Iterator[Any]:
    """Headless chromium through the system's chromium-driver (nothing is downloaded)."""
    try:
        from selenium import webdriver
        from selenium.common.exceptions import WebDriverException
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        _unavailable("selenium is not installed (pip install -e '.[test]')")
    binary, driver_path = _found(BROWSER), _found(DRIVER)
    if binary is None or driver_path is None:
        _unavailable(f"no chromium or chromium-driver on this machine ({INSTALL_HINT})")
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                 "--window-size=390,844"):  # a phone's screen
        options.add_argument(flag)
    try:
        driver = webdriver.Chrome(options=options, service=Service(executable_path=driver_path))
    except WebDriverException as exc:
        _unavailable(f"chromium did not start: {str(exc).splitlines()[0]}")
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


@pytest.fixture
def config_path(tmp_path: Path, db_url: str, sink: SmtpSink) -> Path:
    return write_web_config(tmp_path / "listserv.toml", tmp_path / "data", db_url, sink.port)


def is_member(store, email: str) -> bool:
    with store.reading() as session:
        return session.scalar(select(Member.id).where(Member.email == email)) is not None


def test_a_browser_confirms_a_join_from_the_mail_and_sees_the_welcome_page(
        cli, shma, daemon, sink, store, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    lmtp_send(daemon.ports["lmtp"], JANE, ["shma-join@lists.example.org"],
              make_message(sender=JANE, to="shma-join@lists.example.org", subject="join"))
    link = confirm_link_in(wait_mail(sink, JANE, "Please confirm: join the shma list"))

    browser.get(link)
    assert browser.find_element(By.TAG_NAME, "h1").text == "Join the SHMA list"
    assert not is_member(store, JANE), "opening the page must not confirm"
    # The keyboard reaches the button, and Enter presses it.
    browser.find_element(By.TAG_NAME, "body").send_keys(Keys.TAB)
    button = browser.switch_to.active_element
    assert button.tag_name == "button" and button.text == "Confirm"
    button.send_keys(Keys.ENTER)

    wait_until(lambda: browser.find_element(By.TAG_NAME, "h1").text
               == "Welcome to the SHMA list!", what="the welcome page")
    assert JANE in browser.find_element(By.TAG_NAME, "main").text
    assert is_member(store, JANE)
    wait_mail(sink, JANE, "Welcome to the shma list")
