"""Helpers of the browser tests: daphne serving the test database, and Debian's Chromium driven by
Playwright (never a downloaded browser)."""

from __future__ import annotations

import os
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from mmplatform.ports import free_port
from tests.processes import ARTIFACTS, Proc, process_env

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run", "--disable-sync"]
SCREENSHOTS = ARTIFACTS / "screenshots"
DOCS_SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"


def require_chromium() -> None:
    if not CHROMIUM.exists():
        pytest.skip("Debian Chromium is not installed at /usr/bin/chromium (make system-deps installs it)")




class Daphne:
    """daphne on 127.0.0.1:<port> against the test database and the test Redis."""

    def __init__(self, port: int | None = None, **env: str):
        self.port = port or free_port()
        self.env = env
        self.proc: Proc | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout_secs: float = 30) -> Daphne:
        argv = [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(self.port), "mmplatform.asgi:application"]
        self.proc = Proc("daphne", argv, process_env(DEBUG="1", SECURE_SSL="0", LOG_LEVEL="WARNING", **self.env))
        deadline = time.monotonic() + timeout_secs
        while time.monotonic() < deadline:
            if self.proc.popen.poll() is not None:
                raise RuntimeError(f"daphne exited early:\n{self.proc.output()[-3000:]}")
            try:
                with urllib.request.urlopen(self.url + "/healthz", timeout=1) as response:
                    if response.status == 200:
                        return self
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"daphne did not answer within {timeout_secs}s:\n{self.proc.output()[-3000:]}")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop(timeout_secs=10)
            self.proc = None


@contextmanager
def chromium_page(base_url: str, **context_options: Any) -> Iterator[Any]:
    """A fresh browser context (own cookies) and page on Debian's Chromium."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(base_url=base_url, viewport={"width": 1440, "height": 1000},
                                          **context_options)
            page = context.new_page()
            page.set_default_timeout(15_000)
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.js_errors = errors  # type: ignore[attr-defined]
            yield page
        finally:
            browser.close()


def sign_in(page: Any, username: str, password: str) -> None:
    page.goto("/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", password)
    page.click("button[type=submit]")
    page.wait_for_url("**/")


def screenshot(page: Any, name: str, *, publish: bool = False) -> Path:
    """Save a full-page screenshot under test-artifacts/; with UPDATE_SCREENSHOTS=1 also refresh the
    README's copy in docs/screenshots/ (so an ordinary test run leaves the tree clean)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    if publish and os.environ.get("UPDATE_SCREENSHOTS") == "1":
        DOCS_SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        (DOCS_SCREENSHOTS / f"{name}.png").write_bytes(path.read_bytes())
    return path
