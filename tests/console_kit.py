"""The operator console as the tests meet it: ``ganomaly console`` as a real subprocess and a real Chromium driving it.

The browser is Debian's ``chromium`` with its ``chromedriver`` (same build); nothing is downloaded:
the driver path and the browser binary are both given, so Selenium Manager has nothing to look up.
Screenshots go to the test's own folder and, when ``GANOMALY_TEST_SCREENSHOTS`` is set, to
``runs/console-screens/`` as well, where a person can look at them after the run.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from html.parser import HTMLParser
from pathlib import Path
from typing import Any, Self, TypeVar

from ganomaly.devstack import free_port, stop

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
SCREENS_ENV = "GANOMALY_TEST_SCREENSHOTS"
T = TypeVar("T")


def wait_until(what: str, fn: Callable[[], T], timeout_s: float = 30.0, every_s: float = 0.2) -> T:
    """``fn()`` once it is truthy; an AssertionError naming ``what`` (and the last value or error) when it never is."""
    deadline = time.monotonic() + timeout_s
    last: Any = None
    while True:
        try:
            last = fn()
            if last:
                return last
        except Exception as e:  # noqa: BLE001 - a page still loading raises; the last one is reported on timeout
            last = e
        if time.monotonic() > deadline:
            msg = f"{what}: not within {timeout_s}s (last: {last!r})"
            raise AssertionError(msg)
        time.sleep(every_s)


def console_env(*, bootstrap: str, redis_url: str, prefix: str, token: str | None, **extra: object) -> dict[str, str]:
    """The environment a console shares with the worker and the trainer: same broker, Redis, prefix, topics, store."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GANOMALY_") or k.startswith("GANOMALY_TEST_")}
    env |= {"PYTHONUNBUFFERED": "1", "GANOMALY_BOOTSTRAP_SERVERS": bootstrap, "GANOMALY_REDIS_URL": redis_url,
            "GANOMALY_REDIS_PREFIX": prefix}
    if token is not None:
        env["GANOMALY_CONSOLE_TOKEN"] = token
    env |= {k: str(v) for k, v in extra.items()}
    return env


class ConsoleProc:
    """``ganomaly console`` on a free port of 127.0.0.1, started and waited for (``/healthz`` answers 200)."""

    def __init__(self, env: dict[str, str], log: Path, *, args: tuple[str, ...] = (), timeout_s: float = 60.0) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.token = env.get("GANOMALY_CONSOLE_TOKEN", "")
        self.log_path = log
        self.proc = subprocess.Popen([sys.executable, "-m", "ganomaly", "console", "--host", "127.0.0.1", "--port", str(self.port), *args],
                                     cwd=ROOT, env=env, stdout=log.open("ab"), stderr=subprocess.STDOUT)
        try:
            wait_until("console /healthz", self._healthy, timeout_s=timeout_s)
        except AssertionError:
            stop(self.proc)
            raise AssertionError(f"console did not answer /healthz:\n{self.logs()[-3000:]}") from None

    def _healthy(self) -> bool:
        if self.proc.poll() is not None:
            msg = f"console exited {self.proc.returncode}:\n{self.logs()[-3000:]}"
            raise AssertionError(msg)
        try:
            with urllib.request.urlopen(f"{self.base}/healthz", timeout=1) as r:
                return r.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def url(self, path: str) -> str:
        return f"{self.base}{path}"

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        stop(self.proc, timeout_s=10)


def new_token() -> str:
    return secrets.token_urlsafe(24)


@contextmanager
def chrome(width: int = 1400, height: int = 1000) -> Iterator[Any]:
    """A headless Chromium under Selenium, from the system's own binaries (no Selenium Manager, no download)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = str(CHROMIUM)
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", f"--window-size={width},{height}",
                "--disable-extensions", "--no-first-run", "--password-store=basic"):
        opts.add_argument(arg)
    driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=opts)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


def login(driver: Any, console: ConsoleProc, token: str | None = None) -> None:
    """Log in as a person does: the form on /login, the token typed, the button pressed; ends on the alerts page."""
    from selenium.webdriver.common.by import By

    driver.get(console.url("/login"))
    box = driver.find_element(By.CSS_SELECTOR, "form#login input#token[name=token]")
    box.clear()
    box.send_keys(token if token is not None else console.token)
    driver.find_element(By.CSS_SELECTOR, "button#login-submit").click()
    wait_until("alerts page after login", lambda: driver.find_elements(By.CSS_SELECTOR, "table#alerts"), timeout_s=20)


def image_loaded(driver: Any, css: str) -> int:
    """The natural width of the image ``css`` once the browser has decoded it (0 while loading or broken)."""
    return int(driver.execute_script(
        "const i = document.querySelector(arguments[0]); return i && i.complete ? i.naturalWidth : 0;", css) or 0)


class Screens:
    """Numbered screenshots of one test, kept in ``folder`` and copied to ``runs/console-screens/`` when asked for."""

    def __init__(self, folder: Path, driver: Any) -> None:
        self.folder = folder
        self.folder.mkdir(parents=True, exist_ok=True)
        self.driver = driver
        self.n = 0
        self.keep = ROOT / "runs" / "console-screens" if os.environ.get(SCREENS_ENV) else None
        if self.keep is not None:
            self.keep.mkdir(parents=True, exist_ok=True)

    def shot(self, name: str) -> Path:
        self.n += 1
        path = self.folder / f"{self.n:02d}-{name}.png"
        assert self.driver.save_screenshot(str(path)), f"screenshot {path} failed"
        if self.keep is not None:
            shutil.copy(path, self.keep / path.name)
        return path


# HTTP without a browser: a logged-in httpx client and a small HTML reader (stdlib only).
VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}


class Element:
    def __init__(self, tag: str, attrs: dict[str, str | None]) -> None:
        self.tag, self.attrs, self.parts = tag, attrs, []  # type: ignore[var-annotated]

    @property
    def text(self) -> str:
        return " ".join("".join(self.parts).split())

    @property
    def classes(self) -> set[str]:
        return set((self.attrs.get("class") or "").split())

    def __repr__(self) -> str:
        return f"<{self.tag} {self.attrs} {self.text[:60]!r}>"


class _Reader(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.elements: list[Element] = []
        self.open: list[Element] = []
        self.in_template = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "template":  # inert markup, not part of the page (a browser keeps it out of the DOM too)
            self.in_template += 1
        if self.in_template:
            return
        el = Element(tag, dict(attrs))
        self.elements.append(el)
        if tag not in VOID:
            self.open.append(el)

    def handle_endtag(self, tag: str) -> None:
        if tag == "template":
            self.in_template -= 1
        if self.in_template:
            return
        for i in range(len(self.open) - 1, -1, -1):  # tolerant: closes whatever was left open inside
            if self.open[i].tag == tag:
                del self.open[i:]
                return

    def handle_data(self, data: str) -> None:
        if self.in_template:
            return
        for el in self.open:
            el.parts.append(data)


def select(html: str, tag: str | None = None, *, id_: str | None = None, cls: str | None = None, **attrs: str) -> list[Element]:
    """Elements of ``html`` by tag, id, one class and exact attribute values (``data_status="new"`` for data-status)."""
    r = _Reader()
    r.feed(html)
    want = {k.replace("_", "-"): v for k, v in attrs.items()}
    return [e for e in r.elements if (tag is None or e.tag == tag) and (id_ is None or e.attrs.get("id") == id_)
            and (cls is None or cls in e.classes) and all(e.attrs.get(k) == v for k, v in want.items())]


def csrf_of(html: str) -> str:
    metas = select(html, "meta", name="csrf-token")
    assert metas and metas[0].attrs.get("content"), "no <meta name=csrf-token content=...> on the page"
    return str(metas[0].attrs["content"])


def http_login(console: ConsoleProc, token: str | None = None) -> Any:
    """An httpx client holding an operator session, logged in through the form as a browser would (CSRF included)."""
    import httpx

    c = httpx.Client(base_url=console.base, timeout=30)
    page = c.get("/login")
    assert page.status_code == 200, page.text[:500]
    # no session yet, so no CSRF token to send: the login form carries none (its cookie is SameSite=Strict)
    r = c.post("/login", data={"token": token if token is not None else console.token})
    assert r.status_code in (302, 303), (r.status_code, r.text[:500])
    return c
