"""The annotation page in a real browser (Debian's Chromium, headless) against the local stack.

Screenshots of each screen go to test-artifacts/screens/.
"""

from __future__ import annotations

import json
from pathlib import Path

import boto3
import pytest

from conftest import REPO
from devstack.stack import LocalStack
from discscope.client import Client
from discscope.dataset import find_cases
from lambdas.shared import keys, yolo

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]
SCREENS = REPO / "test-artifacts" / "screens"

playwright_api = pytest.importorskip("playwright.sync_api")


@pytest.fixture(scope="module")
def stack(baseline_model, tmp_path_factory):
    with LocalStack(baseline_model, state_dir=tmp_path_factory.mktemp("state"), snapshot_every_s=0) as s:
        yield s


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: `make test` installs it (apt-get install chromium)")
    with playwright_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser, stack):
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    pg = context.new_page()
    errors = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    pg.goto(stack.gateway.url + "/")
    yield pg
    context.close()
    assert not errors, errors


def shot(page, name: str) -> None:
    SCREENS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENS / f"{name}.png"))


def upload(page, path: Path) -> str:
    page.set_input_files("#file-input", str(path))
    page.wait_for_url("**/#/studies/*", timeout=30_000)
    return page.url.rsplit("/", 1)[-1]


def wait_review(page) -> None:
    page.wait_for_selector("#review:not([hidden])", timeout=120_000)
    page.wait_for_function("window.DiscScopeApp.state.anno && window.DiscScopeApp.state.anno.getAnnotations().length > 0")


def annotations(page) -> list[dict]:
    return page.evaluate("""() => window.DiscScopeApp.state.anno.getAnnotations().map(a => {
        const g = a.target.selector.geometry;
        return {id: a.id, label: a.bodies[0].value, box: [g.x, g.y, g.x + g.w, g.y + g.h]};
    })""")


def screen_box(page, ann: dict) -> dict:
    """Where an annotation's box is on the screen (the canvas is scaled by CSS)."""
    canvas = page.locator("#canvas").bounding_box()
    scale = canvas["width"] / page.evaluate("document.getElementById('canvas').width")
    x1, y1, x2, y2 = ann["box"]
    return {"x": canvas["x"] + x1 * scale, "y": canvas["y"] + y1 * scale, "w": (x2 - x1) * scale, "h": (y2 - y1) * scale}


def test_upload_review_edit_save_reload(page, stack, phantom_dir):
    shot(page, "1-home")
    study_id = upload(page, find_cases([phantom_dir])[0].image_path)
    wait_review(page)
    shot(page, "2-review")
    rows = page.locator("#results-body tr")
    assert rows.count() >= 5
    assert page.locator("#study-status").inner_text().startswith("Done")

    # select a box the model called healthy, relabel it as herniated, move it right by dragging
    target = next(a for a in annotations(page) if not a["label"].endswith("_LDH"))
    level = target["label"]
    box = screen_box(page, target)
    page.mouse.click(box["x"] + box["w"] / 2, box["y"] + box["h"] / 2)
    page.wait_for_selector("#box-editor:not([hidden])")
    page.select_option("#box-label", f"{level}_LDH")
    page.mouse.move(box["x"] + box["w"] / 2, box["y"] + box["h"] / 2)
    page.mouse.down()
    page.mouse.move(box["x"] + box["w"] / 2 + 30, box["y"] + box["h"] / 2, steps=8)
    page.mouse.up()
    page.keyboard.press("Escape")
    moved = next(a for a in annotations(page) if a["id"] == target["id"])
    assert moved["label"] == f"{level}_LDH"
    assert moved["box"][0] > target["box"][0] + 3  # moved to the right
    assert page.locator(".box-label.ldh", has_text=f"{level}_LDH").count() == 1
    shot(page, "3-edited")

    page.click("#save")
    page.wait_for_function("document.getElementById('saved').textContent.startsWith('Corrections saved')")
    assert keys.corrected_key(study_id) in page.locator("#saved").inner_text()
    shot(page, "4-saved")

    stored = Client(stack.gateway.api_url, stack.api_key).study(study_id)
    saved = {d["level"]: d for d in stored["reviewed_discs"]}
    assert saved[level]["herniated"] is True
    assert saved[level]["box"][0] == pytest.approx(moved["box"][0], abs=0.2)
    text = boto3.client("s3").get_object(Bucket=stack.aws.names.study_bucket, Key=keys.corrected_key(study_id))["Body"].read().decode()
    assert any(line.startswith(f"{yolo.CLASSES.index(level + '_LDH')} ") for line in text.splitlines())

    page.reload()
    wait_review(page)
    again = {a["label"]: a for a in annotations(page)}
    assert f"{level}_LDH" in again and again[f"{level}_LDH"]["box"][0] == pytest.approx(moved["box"][0], abs=0.2)
    assert "reviewed" in page.locator("#study-status").inner_text()


def test_add_delete_undo_and_slice_scroller(page, stack, phantom_dir):
    upload(page, find_cases([phantom_dir])[1].image_path)
    wait_review(page)
    before = annotations(page)
    page.click("#add-box")
    canvas = page.locator("#canvas").bounding_box()
    page.mouse.move(canvas["x"] + 10, canvas["y"] + 10)
    page.mouse.down()
    page.mouse.move(canvas["x"] + 60, canvas["y"] + 40, steps=6)
    page.mouse.up()
    page.wait_for_function(f"window.DiscScopeApp.state.anno.getAnnotations().length === {len(before) + 1}")
    page.click("#delete-box")
    assert len(annotations(page)) == len(before)
    page.click("#undo")  # brings the deleted box back
    assert len(annotations(page)) == len(before) + 1
    page.click("#undo")  # and then removes the added one
    assert sorted(a["label"] for a in annotations(page)) == sorted(a["label"] for a in before)
    # slice scroller: away from the key slice the boxes hide and a note says why
    page.locator("#slice").fill("0")
    assert page.locator("#offkey-note").is_visible()
    assert "1 /" in page.locator("#slice-text").inner_text()
    shot(page, "5-other-slice")


def test_accept_path(page, stack, phantom_dir):
    study_id = upload(page, find_cases([phantom_dir])[2].image_path)
    wait_review(page)
    page.click("#accept")
    page.wait_for_function("document.getElementById('saved').textContent.startsWith('Model predictions accepted')")
    stored = Client(stack.gateway.api_url, stack.api_key).study(study_id)
    assert stored["status"] == "REVIEWED" and stored["review"]["kind"] == "accept"
    text = boto3.client("s3").get_object(Bucket=stack.aws.names.study_bucket, Key=keys.initial_key(study_id))["Body"].read().decode()
    assert len(text.splitlines()) == len([d for d in stored["discs"] if d["level"] != "T12-L1"])


def test_rejected_files(page, stack, tmp_path):
    bad_type = tmp_path / "report.pdf"
    bad_type.write_bytes(b"%PDF-1.4")
    page.set_input_files("#file-input", str(bad_type))
    assert "unsupported file type" in page.locator("#upload-error").inner_text()
    renamed = tmp_path / "scan.png"
    renamed.write_text("these are clinical notes, not an image\n" * 5)
    upload(page, renamed)
    page.wait_for_selector("#study-error:not([hidden])", timeout=60_000)
    assert "NOT_AN_IMAGE" in page.locator("#study-error").inner_text()
    assert page.locator("#status-steps li.failed").count() == 1
    shot(page, "6-rejected")


def test_png_slices_zipped_in_the_browser(page, stack, phantom_dir, tmp_path):
    import cv2

    from discscope.io import read_study

    volume = read_study(find_cases([phantom_dir])[3].image_path)
    k = volume.shape[0] // 2
    paths = []
    for i in range(k - 2, k + 3):
        p = tmp_path / f"slice{i}.png"
        sl = volume.array[i]
        cv2.imwrite(str(p), (255 * (sl - sl.min()) / max(sl.max() - sl.min(), 1)).astype("uint8"))
        paths.append(str(p))
    page.set_input_files("#file-input", paths[::-1])  # any order: the page sorts naturally
    page.wait_for_url("**/#/studies/*", timeout=30_000)
    wait_review(page)
    study = Client(stack.gateway.api_url, stack.api_key).study(page.url.rsplit("/", 1)[-1])
    assert study["filename"] == "slices.zip" and study["num_slices"] == 5


def test_deep_link_list_and_keyboard(page, stack, phantom_dir):
    client = Client(stack.gateway.api_url, stack.api_key)
    done = client.analyze(find_cases([phantom_dir])[4].image_path)
    page.goto(f"{stack.gateway.url}/#/studies/{done['study_id']}")
    wait_review(page)
    page.goto(stack.gateway.url + "/")
    page.wait_for_selector("#study-list li")
    assert page.locator("#study-list a", has_text="phantom_0004.mha").count() >= 1
    page.keyboard.press("Tab")  # skip link
    page.keyboard.press("Tab")  # brand
    for _ in range(4):
        if page.evaluate("document.activeElement.id") == "dropzone":
            break
        page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.id") == "dropzone"
    # Enter must open the file picker: count clicks on the file input (Chromium's own chooser
    # dialog event proved racy under load, the page's behaviour is what is tested here)
    page.evaluate("""() => { window.__picks = 0; const input = document.getElementById('file-input');
        input.addEventListener('click', (e) => { window.__picks += 1; e.preventDefault(); }); }""")
    page.keyboard.press("Enter")
    page.keyboard.press(" ")
    assert page.evaluate("window.__picks") == 2
    assert page.get_attribute("#file-input", "multiple") is not None


@pytest.mark.parametrize("width,height,name", [(768, 1024, "tablet"), (1280, 800, "desktop")])
def test_layout_fits(browser, stack, phantom_dir, width, height, name):
    client = Client(stack.gateway.api_url, stack.api_key)
    done = client.analyze(find_cases([phantom_dir])[5].image_path)
    context = browser.new_context(viewport={"width": width, "height": height})
    pg = context.new_page()
    pg.goto(f"{stack.gateway.url}/#/studies/{done['study_id']}")
    wait_review(pg)
    # nothing wider than the screen, the canvas readable, the buttons reachable
    assert pg.evaluate("document.documentElement.scrollWidth") <= width
    assert pg.locator("#canvas").bounding_box()["width"] >= min(300, width * 0.4)
    assert pg.locator("#save").is_visible() and pg.locator("#accept").is_visible()
    shot(pg, f"7-{name}")
    context.close()


def test_page_config_points_at_the_api(stack):
    import urllib.request

    with urllib.request.urlopen(stack.gateway.url + "/config.js") as resp:
        text = resp.read().decode()
    config = json.loads(text.split("=", 1)[1].rstrip().rstrip(";"))
    assert config["apiUrl"] == stack.gateway.api_url


def test_boxes_can_be_edited_with_the_keyboard(page, stack, phantom_dir):
    upload(page, find_cases([phantom_dir])[1].image_path)
    wait_review(page)
    first = annotations(page)[0]
    button = page.locator(f"#box-buttons button[data-id='{first['id']}']")
    button.focus()
    page.keyboard.press("Enter")
    assert button.get_attribute("aria-pressed") == "true"
    for _ in range(3):
        page.keyboard.press("ArrowRight")
    page.keyboard.press("Shift+ArrowDown")
    page.keyboard.press("Alt+ArrowRight")
    after = next(a for a in annotations(page) if a["id"] == first["id"])
    x1, y1, x2, y2 = first["box"]
    assert after["box"] == pytest.approx([x1 + 3, y1 + 5, x2 + 4, y2 + 5])
    page.keyboard.press("Control+z")
    undone = next(a for a in annotations(page) if a["id"] == first["id"])
    assert undone["box"] == pytest.approx([x1 + 3, y1 + 5, x2 + 3, y2 + 5])
