"""What the browser tests share: the local stack, Chromium, a page that fails on script errors,
and helpers that act on the page as a reader does (mouse, keyboard) and read what it shows.

Screenshots go to test-artifacts/screens/.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest

from conftest import REPO
from devstack.stack import LocalStack
from discscope.client import Client
from discscope.dataset import find_cases

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]
SCREENS = REPO / "test-artifacts" / "screens"

playwright_api = pytest.importorskip("playwright.sync_api")


@pytest.fixture(scope="module")
def stack(baseline_model, tmp_path_factory):
    with LocalStack(baseline_model, state_dir=tmp_path_factory.mktemp("state"), user="alice") as s:
        yield s


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: `make test` installs it (apt-get install chromium)")
    with playwright_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


@pytest.fixture(scope="module")
def client(stack) -> Client:
    return Client(stack.gateway.api_url, stack.api_key)


def new_page(browser, stack, width: int = 1440, height: int = 900, path: str = "/"):
    """A page in its own context; `page.problems` collects script errors and console errors."""
    context = browser.new_context(viewport={"width": width, "height": height})
    pg = context.new_page()
    pg.problems = []
    pg.on("pageerror", lambda e: pg.problems.append(f"pageerror: {e}"))
    pg.on("console", lambda m: m.type == "error" and pg.problems.append(f"console.error: {m.text}"))
    pg.goto(stack.gateway.url + path)
    return pg


@pytest.fixture
def page(browser, stack):
    pg = new_page(browser, stack)
    yield pg
    problems = pg.problems
    pg.context.close()
    assert not problems, problems


def shot(page, name: str) -> None:
    SCREENS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENS / f"{name}.png"))


def analyse(client: Client, phantom_dir: Path, index: int) -> dict:
    return client.analyze(find_cases([phantom_dir])[index].image_path, timeout=180)


def open_study(page, stack, study_id: str) -> None:
    page.goto(f"{stack.gateway.url}/#/studies/{study_id}")
    wait_review(page)


def upload(page, path: Path) -> str:
    page.set_input_files("#file-input", str(path))
    page.wait_for_url("**/#/studies/*", timeout=30_000)
    return page.url.rsplit("/", 1)[-1]


def wait_review(page) -> None:
    page.wait_for_selector("#review:not([hidden])", timeout=120_000)
    page.wait_for_function("window.DiscScopeApp.state.anno && window.DiscScopeApp.state.anno.getAnnotations().length > 0")


def annotations(page) -> list[dict]:
    """The boxes as Annotorious holds them: id, label, [x1, y1, x2, y2] and any rotation."""
    return page.evaluate("""() => window.DiscScopeApp.state.anno.getAnnotations().map(a => {
        const g = a.target.selector.geometry;
        const tag = (a.bodies || []).find(b => b.purpose === 'tagging');
        return {id: a.id, label: tag ? tag.value : null, box: [g.x, g.y, g.x + g.w, g.y + g.h], rot: g.rot || 0};
    })""")


def by_label(page, label: str) -> dict:
    return next(a for a in annotations(page) if a["label"] == label)


def image_scale(page) -> float:
    canvas = page.locator("#canvas").bounding_box()
    return canvas["width"] / page.evaluate("document.getElementById('canvas').width")


def screen_box(page, ann: dict) -> dict:
    """Where an annotation's box is on the screen (the canvas is scaled by CSS, and by the zoom)."""
    canvas = page.locator("#canvas").bounding_box()
    scale = image_scale(page)
    x1, y1, x2, y2 = ann["box"]
    return {"x": canvas["x"] + x1 * scale, "y": canvas["y"] + y1 * scale, "w": (x2 - x1) * scale, "h": (y2 - y1) * scale}


def on_screen(page, x: float, y: float) -> tuple[float, float]:
    """The screen point of image pixel (x, y) on the key slice."""
    canvas = page.locator("#canvas").bounding_box()
    scale = image_scale(page)
    return canvas["x"] + x * scale, canvas["y"] + y * scale


def centre(box: dict) -> tuple[float, float]:
    return box["x"] + box["w"] / 2, box["y"] + box["h"] / 2


def click_box(page, ann: dict) -> None:
    page.mouse.click(*centre(screen_box(page, ann)))
    page.wait_for_selector("#box-editor:not([hidden])")


def drag(page, start: tuple[float, float], end: tuple[float, float], steps: int = 6) -> None:
    page.mouse.move(*start)
    page.mouse.down()
    page.mouse.move(*end, steps=steps)
    page.mouse.up()


def label_text(page, label: str) -> str:
    """The text shown on the image next to the box called `label`."""
    return page.locator(".box-label", has_text=label).first.inner_text()


@contextlib.contextmanager
def endpoint_answer(stack, change):
    """The endpoint's answers passed through `change(result) -> result` (or raising), as a model
    that produces other results would; the workflow, API and page are the real ones."""
    host = stack.endpoint.model_host
    real = host.invoke

    def invoke(*args, **kwargs):
        return change(real(*args, **kwargs))

    host.invoke = invoke
    try:
        yield
    finally:
        host.invoke = real


class Actions:
    """Counts what a reader does: each click, key press or choice is one action."""

    def __init__(self, page):
        self.page, self.count = page, 0

    def click(self, selector: str) -> None:
        self.page.click(selector)
        self.count += 1

    def click_at(self, x: float, y: float) -> None:
        self.page.mouse.click(x, y)
        self.count += 1

    def press(self, key: str) -> None:
        self.page.keyboard.press(key)
        self.count += 1
