"""Reviewing on the annotation page in a real browser (Chromium) against the local stack: what a
save shows, two reviewers, unsaved edits, refused uploads, failed studies, the tablet layout, the
model's warnings, the worklist, shortcuts, and how few actions a shifted naming takes to fix."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from devstack.gateway import page_user
from discscope.errors import InputError
from web_page import (  # noqa: F401  (fixtures)
    Actions, analyse, annotations, browser, centre, click_box, client, endpoint_answer, new_page, open_study, page,
    screen_box, shot, stack, wait_review,
)

SAVED = "/(saved|accepted)/i.test(document.getElementById('saved').textContent)"


def _relabel_one(page) -> tuple[str, str]:
    """Marks a healthy disc herniated; returns its level and new label."""
    target = next(a for a in annotations(page) if not a["label"].endswith("_LDH") and a["label"] != "T12-L1")
    click_box(page, target)
    page.select_option("#box-label", f"{target['label']}_LDH")
    return target["label"], f"{target['label']}_LDH"


def test_a_saved_correction_shows_at_once_in_a_readable_message(page, stack, client, phantom_dir):
    """Defects 5 and 6: after a save the table, status and list show what was stored; the message
    says version and reviewer, not an S3 key, and fits its panel."""
    study = analyse(client, phantom_dir, 0)
    open_study(page, stack, study["study_id"])
    level, label = _relabel_one(page)
    page.click("#save")
    page.wait_for_function(SAVED)
    row = page.locator("#results-body tr", has_text=level)
    assert row.locator("td").nth(2).inner_text() == "yes"
    assert "reviewed" in page.locator("#study-status").inner_text().lower()
    assert page.locator("#status-steps li[data-step='DONE']").inner_text() == "Reviewed"
    message = page.locator("#saved").inner_text()
    assert "feedback/" not in message and ".txt" not in message
    assert "version 1" in message and "alice" in message
    assert page.eval_on_selector("#saved", "e => e.scrollWidth <= e.clientWidth + 1")
    page.wait_for_selector(f"#study-list li[data-id='{study['study_id']}'] .badge.reviewed")
    shot(page, "saved")


def test_a_stale_page_cannot_overwrite_another_reviewers_save(browser, stack, client, phantom_dir, monkeypatch):
    """Defect 8: Bob's page, opened before Alice saved, cannot accept over her correction; it says
    so, offers to reload, and after the reload Bob's save is version 2 beside hers."""
    study = analyse(client, phantom_dir, 1)
    sid = study["study_id"]
    alice, bob = new_page(browser, stack), new_page(browser, stack, 1440, 1000)
    open_study(alice, stack, sid)
    open_study(bob, stack, sid)
    monkeypatch.setattr(stack.gateway, "user", page_user("alice"))
    level, label = _relabel_one(alice)
    alice.click("#save")
    alice.wait_for_function(SAVED)
    corrected = client.study(sid)["reviewed_discs"]

    monkeypatch.setattr(stack.gateway, "user", page_user("bob"))
    bob.click("#accept")
    bob.wait_for_selector("#stale:not([hidden])")
    assert "alice" in bob.locator("#stale-text").inner_text()
    assert client.study(sid)["reviewed_discs"] == corrected  # her correction stands
    bob.click("#stale-reload")
    bob.wait_for_function(f"window.DiscScopeApp.state.anno && window.DiscScopeApp.state.anno.getAnnotations().some(a => a.bodies[0].value === '{label}')")
    assert "alice" in bob.locator("#history").inner_text()
    bob.click("#accept")
    bob.wait_for_function(SAVED)
    history = bob.locator("#history li").all_inner_texts()
    assert len(history) == 2 and history[0].startswith("v2") and "bob" in history[0] and "alice" in history[1]
    bob.wait_for_selector(f"#study-list li[data-id='{sid}'] .meta:has-text('bob')")  # the worklist too
    shot(bob, "review-history")
    final = client.study(sid)
    assert [(f["version"], f["reviewer"]["id"]) for f in final["feedback"]] == [(1, "alice"), (2, "bob")]
    for pg in (alice, bob):
        # the refused save is a 409 the browser logs; anything else is a problem
        problems = [p for p in pg.problems if "409 (Conflict)" not in p]
        assert not problems, problems
        pg.context.close()


def test_unsaved_edits_are_not_lost_without_a_warning(page, stack, client, phantom_dir):
    """Defect 9: leaving a study with unsaved edits asks first (in the page and on reload/close)."""
    first, second = analyse(client, phantom_dir, 2), analyse(client, phantom_dir, 3)
    open_study(page, stack, first["study_id"])
    level, label = _relabel_one(page)
    asked = []
    page.once("dialog", lambda d: (asked.append(d.type), d.dismiss()))
    page.click(f"#study-list a[href='#/studies/{second['study_id']}']")
    page.wait_for_timeout(300)
    assert asked == ["confirm"]
    assert page.url.endswith(first["study_id"])
    assert label in [a["label"] for a in annotations(page)]  # the edit is still there
    prevented = page.evaluate("() => { const e = new Event('beforeunload', {cancelable: true}); window.dispatchEvent(e); return e.defaultPrevented; }")
    assert prevented  # the browser asks before a reload or close
    page.once("dialog", lambda d: (asked.append(d.type), d.accept()))
    page.click(f"#study-list a[href='#/studies/{second['study_id']}']")
    page.wait_for_url(f"**/{second['study_id']}")
    wait_review(page)
    assert asked == ["confirm", "confirm"]


def _png(path, shape, value=90):
    cv2.imwrite(str(path), np.full(shape, value, np.uint8))
    return str(path)


def test_a_drop_of_two_series_is_refused_before_anything_is_sent(page, client, tmp_path):
    """Defect 10: several files must be one series (one naming, one size), else a clear refusal."""
    before = client.studies(limit=100)["total"]
    two_patients = [_png(tmp_path / f"{p}_{i}.png", (64, 64)) for p in ("patA", "patB") for i in (1, 2, 3)]
    page.set_input_files("#file-input", two_patients)
    page.wait_for_selector("#upload-error:not([hidden])")
    assert "2 different series" in page.locator("#upload-error").inner_text()
    sizes = [_png(tmp_path / "s1.png", (64, 64)), _png(tmp_path / "s2.png", (80, 64))]
    page.set_input_files("#file-input", sizes)
    page.wait_for_function("document.getElementById('upload-error').textContent.includes('differ in size')")
    volumes = [tmp_path / "a.mha", tmp_path / "b.mha"]
    for v in volumes:
        v.write_bytes(b"ObjectType = Image\n")
    page.set_input_files("#file-input", [str(v) for v in volumes])
    page.wait_for_function("document.getElementById('upload-error').textContent.includes('one study at a time')")
    assert client.studies(limit=100)["total"] == before
    assert page.url.endswith("/")  # no study was opened


def _no_spine(result):
    error = InputError("no intervertebral disc was found: this does not look like a sagittal lumbar MRI", code="NO_SPINE_FOUND")
    error.http_status = 422
    raise error


def test_failed_studies_show_their_code_message_and_what_to_do(page, stack, phantom_dir, tmp_path):
    """Defect 13 (the page's part): a FAILED study shows its code, its message and a hint."""
    from discscope.dataset import find_cases

    with endpoint_answer(stack, _no_spine):
        page.set_input_files("#file-input", str(find_cases([phantom_dir])[4].image_path))
        page.wait_for_selector("#study-error:not([hidden])", timeout=60_000)
    assert page.locator("#study-error-code").inner_text() == "NO_SPINE_FOUND"
    assert "sagittal lumbar MRI" in page.locator("#study-error-message").inner_text()
    assert "No lumbar disc was found" in page.locator("#study-error-hint").inner_text()
    assert page.locator("#status-steps li.failed").inner_text() == "Failed" and page.locator("#review").is_hidden()
    shot(page, "failed-no-spine")
    truncated = tmp_path / "cut.mha"
    truncated.write_bytes(b"ObjectType = Image\nNDims = 3\nDimSize = 64 64 64\nElementType = MET_SHORT\nElementDataFile = LOCAL\n" + b"\0" * 99)
    page.set_input_files("#file-input", str(truncated))
    page.wait_for_function("document.getElementById('study-error-code').textContent === 'TRUNCATED_FILE'", timeout=60_000)
    assert "incomplete" in page.locator("#study-error-hint").inner_text()


def test_tablet_layout_switching_studies_and_the_open_study_marked(browser, stack, client, phantom_dir):
    """Defect 14: on a tablet the study is at the top; switching studies with a box selected logs no
    errors; the open study is marked in the worklist."""
    first, second = analyse(client, phantom_dir, 5), analyse(client, phantom_dir, 0)
    pg = new_page(browser, stack, 768, 1024, f"/#/studies/{first['study_id']}")
    wait_review(pg)
    assert pg.locator("#study").bounding_box()["y"] < 150
    assert pg.evaluate("document.documentElement.scrollWidth") <= 768
    pg.wait_for_selector(f"#study-list li[data-id='{first['study_id']}'] a[aria-current='page']")
    click_box(pg, annotations(pg)[0])
    pg.click(f"#study-list a[href='#/studies/{second['study_id']}']")
    pg.wait_for_url(f"**/{second['study_id']}")
    wait_review(pg)
    assert pg.locator(f"#study-list li[data-id='{second['study_id']}'] a").get_attribute("aria-current") == "page"
    assert pg.locator(f"#study-list li[data-id='{first['study_id']}'] a").get_attribute("aria-current") is None
    shot(pg, "tablet")
    assert not pg.problems, pg.problems
    pg.context.close()


REASONS = [{"code": "FEWER_THAN_FIVE_LUMBAR_DISCS", "message": "only four lumbar discs were found"},
           {"code": "LOW_NAMING_CONFIDENCE", "message": "the level names may be shifted"}]


def _flagged(result):
    for i, disc in enumerate(result["discs"]):
        disc |= {"pfirrmann": 2 + i % 3, "bulging_probability": 0.25}
    return result | {"needs_review": True, "review_reasons": REASONS, "naming_confidence": 0.38, "spacing_source": "estimated"}


def test_a_flagged_study_says_why_at_the_top(page, stack, client, phantom_dir):
    with endpoint_answer(stack, _flagged):
        study = analyse(client, phantom_dir, 1)
    open_study(page, stack, study["study_id"])
    warning = page.locator("#review-warning")
    assert warning.is_visible()
    assert warning.bounding_box()["y"] < page.locator("#viewer").bounding_box()["y"]
    text = warning.inner_text()
    assert all(r["message"] in text and r["code"] in text for r in REASONS) and "0.38" in text
    assert page.locator("#grade-header").is_visible()  # the per-disc grades, when the model gives them
    assert page.locator("#results-body tr").first.inner_text().count("Pfirrmann") == 1
    page.select_option("#list-flagged", "true")
    page.wait_for_function(f"[...document.querySelectorAll('#study-list li')].every(li => li.dataset.id === '{study['study_id']}')"
                           " && document.querySelectorAll('#study-list li').length === 1")
    assert page.locator("#study-list li .badge.flag").count() == 1
    shot(page, "flagged")


def _list_ids(page) -> list[str]:
    return page.eval_on_selector_all("#study-list li", "els => els.map(e => e.dataset.id)")


def test_worklist_order_filters_and_save_and_next(page, stack, client, phantom_dir):
    studies = [analyse(client, phantom_dir, i) for i in (2, 3, 4)]
    page.goto(stack.gateway.url + "/")
    page.wait_for_selector("#study-list li")
    shown = _list_ids(page)
    assert shown == [s["study_id"] for s in client.studies(limit=100)["studies"]][:len(shown)]
    states = page.eval_on_selector_all("#study-list li", "els => els.map(e => e.className)")
    first_reviewed = next((i for i, c in enumerate(states) if "reviewed" in c), len(states))
    assert all("reviewed" not in c for c in states[:first_reviewed]) and all("reviewed" in c for c in states[first_reviewed:])

    for order in ("probability", "date"):
        page.select_option("#list-sort", order)
        expected = [s["study_id"] for s in client.studies(limit=25, sort=order)["studies"]]
        page.wait_for_function("ids => JSON.stringify([...document.querySelectorAll('#study-list li')].map(e => e.dataset.id))"
                               " === JSON.stringify(ids)", arg=expected)
        if order == "probability":
            open_study(page, stack, expected[0])
            shot(page, "worklist")

    # Save & next: the next study in the list opens; Accept & next (Shift+A) likewise
    ids = _list_ids(page)
    open_study(page, stack, ids[0])
    _relabel_one(page)
    page.click("#save-next")
    page.wait_for_url(f"**/{ids[1]}")
    wait_review(page)
    assert client.study(ids[0])["status"] == "REVIEWED"
    page.locator("#main").focus()
    page.keyboard.press("Shift+A")
    page.wait_for_url(f"**/{ids[2]}")
    wait_review(page)
    assert client.study(ids[1])["review"]["kind"] == "accept"
    page.wait_for_selector(f"#study-list li[data-id='{ids[1]}'].status-reviewed")
    now = _list_ids(page)  # the reviewed two have moved down the list
    after = now[now.index(ids[2]) + 1]
    page.keyboard.press("j")  # next in the list, and back
    page.wait_for_url(f"**/{after}")
    page.keyboard.press("k")
    page.wait_for_url(f"**/{ids[2]}")

    page.select_option("#list-reviewer", "alice")
    page.wait_for_function("document.querySelectorAll('#study-list li').length > 0 && [...document.querySelectorAll('#study-list li')]"
                           ".every(li => li.querySelector('.meta').textContent.includes('alice'))")
    page.select_option("#list-reviewer", "")
    page.select_option("#list-status", "REVIEWED")
    page.wait_for_function("[...document.querySelectorAll('#study-list li')].every(li => li.classList.contains('status-reviewed'))")
    assert studies  # the three analysed above are in the list


def test_the_shortcut_list_opens_with_question_mark(page, stack, client, phantom_dir):
    study = analyse(client, phantom_dir, 5)
    open_study(page, stack, study["study_id"])
    page.locator("#main").focus()
    page.keyboard.press("?")
    assert page.locator("#help").is_visible()
    keys = page.locator("#help-body th").all_inner_texts()
    for expected in ("N", "Delete / Backspace", "Esc", "]", "[", "J", "K", "A", "Ctrl+S", "Ctrl+Z", "Ctrl+Shift+Z / Ctrl+Y", "?", "F"):
        assert expected in keys
    shot(page, "shortcuts")
    page.keyboard.press("Escape")
    assert page.locator("#help").is_hidden()
    before = sorted(a["label"] for a in annotations(page))
    page.keyboard.press("]")  # the top disc
    top = min(annotations(page), key=lambda a: a["box"][1])
    other, key = ("L1-L2", "1") if top["label"].startswith("T12-L1") else ("T12-L1", "0")
    page.keyboard.press(key)  # "this disc is ...": every name moves by one
    top = min(annotations(page), key=lambda a: a["box"][1])
    assert top["label"].startswith(other) and sorted(a["label"] for a in annotations(page)) != before
    page.keyboard.press("Control+z")
    assert sorted(a["label"] for a in annotations(page)) == before
    page.keyboard.press("h")  # the selected disc: herniated or not
    page.keyboard.press("Control+s")  # save from the keyboard
    page.wait_for_function("document.getElementById('saved').textContent.startsWith('Corrections saved: version 1')")
    page.keyboard.press("a")  # accept the model's result (a new version)
    page.wait_for_function("document.getElementById('saved').textContent.startsWith('Model predictions accepted: version 2')")


def _shift_names(result):
    """The model's names one level too high: the real L5-S1 is called L4-L5, L1-L2 is called T12-L1."""
    names = ["T12-L1", "L1-L2", "L2-L3", "L3-L4", "L4-L5", "L5-S1"]
    assert "T12-L1" not in [d["level"] for d in result["discs"]]
    for d in result["discs"]:
        d["true_level"] = d["level"]
        d["level"] = names[names.index(d["level"]) - 1]
    return result


def test_a_study_named_one_level_off_is_corrected_in_three_actions(page, stack, client, phantom_dir):
    with endpoint_answer(stack, _shift_names):
        study = analyse(client, phantom_dir, 2)
    truth = {tuple(d["box"]): d["true_level"] for d in study["discs"]}
    open_study(page, stack, study["study_id"])
    actions = Actions(page)
    lowest = max(annotations(page), key=lambda a: a["box"][1])
    actions.click_at(*centre(screen_box(page, lowest)))          # 1: the disc that is really L5-S1
    actions.click("#renumber button[data-level='L5-S1']")        # 2: "this disc is L5-S1"
    actions.click("#save")                                       # 3
    page.wait_for_function(SAVED)
    assert actions.count <= 3
    saved = client.study(study["study_id"])["reviewed_discs"]
    assert {tuple(d["box"]): d["level"] for d in saved} == truth
