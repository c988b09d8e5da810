"""A real browser for the dashboard's tests: Debian's headless Chromium, driven by
Selenium through Debian's chromedriver (both installed by .ci/run; on a developer's
machine: ``apt-get install chromium chromium-driver``). Nothing is downloaded at run time."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager

from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service

#: Where Debian puts them; $CHROMIUM and $CHROMEDRIVER name others.
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("CHROMEDRIVER", "/usr/bin/chromedriver")

#: Headless, as root in a container, and without the background connections that a
#: machine with a closed network refuses by the dozen (updates, sync, field trials).
FLAGS = (
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
    "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--disable-extensions",
    "--window-size=1280,900",
)


class BrowserMissing(AssertionError):
    """Chromium or chromedriver is not installed: the tests say how to install them."""


def find_browser() -> tuple[str, str]:
    """The paths of Chromium and chromedriver, or BrowserMissing saying how to get them."""
    found = [shutil.which(path) for path in (CHROMIUM, CHROMEDRIVER)]
    if None in found:
        raise BrowserMissing(
            f"the dashboard's browser tests need Chromium ({CHROMIUM}) and chromedriver "
            f"({CHROMEDRIVER}): apt-get install chromium chromium-driver (.ci/run does)"
        )
    return found[0] or CHROMIUM, found[1] or CHROMEDRIVER


@contextmanager
def chromium(javascript: bool = True) -> Iterator[webdriver.Chrome]:
    """A headless Chromium with a profile of its own, closed at the end."""
    binary, driver = find_browser()
    profile = tempfile.mkdtemp(prefix="redistimers-chromium-")
    options = Options()
    options.binary_location = binary
    for flag in (*FLAGS, f"--user-data-dir={profile}"):
        options.add_argument(flag)
    if not javascript:
        options.add_experimental_option(
            "prefs", {"profile.managed_default_content_settings.javascript": 2}
        )
    browser = webdriver.Chrome(service=Service(executable_path=driver), options=options)
    browser.set_page_load_timeout(30)
    try:
        yield browser
    finally:
        browser.quit()
        shutil.rmtree(profile, ignore_errors=True)
