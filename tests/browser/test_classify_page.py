"""A volunteer classifies real DECaLS galaxies in chromium: the decision tree, the clump boxes (draw, move,
delete) with a mouse, with touch at phone width and with the keyboard alone, then the next galaxy; the
database holds exactly that classification, boxes in image pixels. A submission made offline is kept
in the browser and sent after a reload. Screenshots go to test-artifacts/screenshots/."""
from __future__ import annotations

import time

import pytest

from tests.platform.test_classify_selector import assert_handed_to_aggregator
from zooplatform.classify.models import Classification, ClumpBox

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PATH = [
    ("smooth-or-featured", "featured-or-disk"), ("disk-edge-on", "no"), ("bar", "strong"),
    ("has-spiral-arms", "yes"), ("spiral-winding", "tight"), ("spiral-arm-count", "2"), ("bulge-size", "small"),
    ("merging", "none"),
]
TO_CLIENT = """([x, y]) => {
  const r = document.getElementById('stage').getBoundingClientRect(), v = document.getElementById('viewer');
  const W = +v.dataset.imageWidth, H = +v.dataset.imageHeight, k = Math.min(r.width / W, r.height / H);
  return [r.left + (r.width - W * k) / 2 + x * k, r.top + (r.height - H * k) / 2 + y * k];
}"""


def open_classify(browser, site, **context):
    ctx = browser.new_context(**context)
    page = ctx.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(site.url + "/classify/")
    page.wait_for_selector("#answers .answer")
    page.wait_for_function("document.getElementById('galaxy').naturalWidth > 0")
    return ctx, page, errors


def subject_id(page) -> int:
    return int(page.get_attribute("#viewer", "data-subject-id"))


def answer(page, name, tap=False):
    selector = f'#answers .answer[data-answer="{name}"]'
    page.tap(selector) if tap else page.click(selector)


def answer_path_with_one_back(page, tap=False):
    answer(page, PATH[0][1], tap)
    answer(page, "yes", tap)  # edge-on? then change our mind
    assert page.text_content("#question-text").startswith("Does the galaxy have a bulge")
    page.tap("#back") if tap else page.click("#back")
    assert page.text_content("#question-text").startswith("Could this be a disk viewed edge-on")
    assert page.is_visible('#answers .answer.chosen[data-answer="yes"]')
    for _, name in PATH[1:]:
        answer(page, name, tap)
    assert page.is_visible("#box-step") and page.is_visible("#done")


def to_client(page, x, y):
    return page.evaluate(TO_CLIENT, [x, y])


def mouse_drag(page, a, b):
    page.mouse.move(*to_client(page, *a))
    page.mouse.down()
    page.mouse.move(*to_client(page, *b), steps=6)
    page.mouse.up()


def touch_drag(cdp, page, a, b, steps=6):
    (x0, y0), (x1, y1) = to_client(page, *a), to_client(page, *b)
    cdp.send("Input.dispatchTouchEvent", {"type": "touchStart", "touchPoints": [{"x": x0, "y": y0}]})
    for i in range(1, steps + 1):
        cdp.send("Input.dispatchTouchEvent", {"type": "touchMove", "touchPoints": [
            {"x": x0 + (x1 - x0) * i / steps, "y": y0 + (y1 - y0) * i / steps}]})
    cdp.send("Input.dispatchTouchEvent", {"type": "touchEnd", "touchPoints": []})


def touch_tap(cdp, x, y):
    cdp.send("Input.dispatchTouchEvent", {"type": "touchStart", "touchPoints": [{"x": x, "y": y}]})
    cdp.send("Input.dispatchTouchEvent", {"type": "touchEnd", "touchPoints": []})


def centre(page, selector):
    box = page.locator(selector).bounding_box()
    return box["x"] + box["width"] / 2, box["y"] + box["height"] / 2


def submit_and_see_next(page, first_id):
    with page.expect_response(lambda r: r.url.endswith("/api/classifications/") and r.request.method == "POST") as resp:
        page.click("#done") if page.is_visible("#done") else None
    assert resp.value.status == 201, resp.value.text()
    page.wait_for_function(
        "id => { const v = document.getElementById('viewer'); return v.dataset.subjectId && v.dataset.subjectId !== id"
        " && document.getElementById('galaxy').complete && document.getElementById('galaxy').naturalWidth > 0"
        " && document.querySelector('#answers .answer') && !document.getElementById('question-step').hidden }",
        arg=str(first_id))
    assert page.text_content("#question-text").startswith("Is the galaxy simply smooth")
    return resp.value.json()["id"]


def assert_stored(site, cid, subject, box, tol=1.5):
    c = Classification.objects.get()  # exactly one classification
    assert c.pk == cid and c.subject_id == subject
    assert [(s["question"], s["answer"]) for s in c.answers] == PATH
    assert not c.no_clumps and c.started_at <= c.finished_at
    (stored,) = ClumpBox.objects.filter(classification=c)
    for key, want in zip(("x", "y", "width", "height"), box):
        assert abs(getattr(stored, key) - want) <= tol, (key, stored.as_dict(), box)
    assert_handed_to_aggregator(site.send_task, cid)


def test_desktop_mouse_tree_boxes_move_delete_submit_next(browser, site, real_galaxies, screenshots):
    ctx, page, errors = open_classify(browser, site, viewport={"width": 1366, "height": 860})
    first = subject_id(page)
    assert page.get_attribute("#viewer", "data-image-width") == "424"
    page.screenshot(path=str(screenshots / "classify-desktop-question.png"))
    answer_path_with_one_back(page)

    mouse_drag(page, (100, 100), (160, 150))
    mouse_drag(page, (250, 250), (300, 320))
    assert page.text_content("#box-count") == "2 clumps marked"
    mouse_drag(page, (130, 125), (170, 145))  # move the first box by (+40, +20)
    page.click('#overlay g.box-g[data-i="1"] rect.box')  # select the second box...
    page.click("#overlay .delete-btn circle")  # ...and delete it
    assert page.text_content("#box-count") == "1 clump marked"
    page.click('#overlay g.box-g[data-i="0"] rect.box')
    page.screenshot(path=str(screenshots / "classify-desktop.png"))

    cid = submit_and_see_next(page, first)
    assert_stored(site, cid, first, (140, 120, 60, 50))
    page.click("#info-toggle")
    assert "DECaLS DR5" in page.text_content("#info")
    assert errors == []
    ctx.close()


def test_phone_touch_tree_boxes_move_delete_submit_next(browser, site, real_galaxies, screenshots):
    ctx, page, errors = open_classify(browser, site, viewport={"width": 390, "height": 844}, has_touch=True,
                                      is_mobile=True, device_scale_factor=2)
    cdp = ctx.new_cdp_session(page)
    first = subject_id(page)
    assert page.evaluate("document.documentElement.scrollWidth") <= 390  # nothing wider than the phone
    page.screenshot(path=str(screenshots / "classify-phone-question.png"), full_page=True)
    answer_path_with_one_back(page, tap=True)
    page.evaluate("window.scrollTo(0, 0)")

    touch_drag(cdp, page, (80, 90), (150, 160))
    touch_drag(cdp, page, (260, 240), (330, 300))
    assert page.text_content("#box-count") == "2 clumps marked"
    touch_drag(cdp, page, (115, 125), (95, 165))  # move the first box by (-20, +40)
    touch_tap(cdp, *centre(page, '#overlay g.box-g[data-i="1"] rect.box'))
    touch_tap(cdp, *centre(page, "#overlay .delete-btn circle"))
    assert page.text_content("#box-count") == "1 clump marked"
    page.screenshot(path=str(screenshots / "classify-phone.png"), full_page=True)

    with page.expect_response(lambda r: r.url.endswith("/api/classifications/") and r.request.method == "POST") as resp:
        page.tap("#done")
    assert resp.value.status == 201
    page.wait_for_function("id => document.getElementById('viewer').dataset.subjectId !== id "
                           "&& !document.getElementById('question-step').hidden", arg=str(first))
    # A touch point is a CSS pixel, about 0.9 image pixels at this width: allow a little more slack.
    assert_stored(site, resp.value.json()["id"], first, (60, 130, 70, 70), tol=2.5)
    assert errors == []
    ctx.close()


def test_keyboard_alone(browser, site, real_galaxies):
    ctx, page, errors = open_classify(browser, site, viewport={"width": 1280, "height": 800})
    first = subject_id(page)
    keys = {"featured-or-disk": "2", "no": "2", "strong": "1", "yes": "1", "tight": "1", "2": "2", "small": "2",
            "none": "4"}
    page.keyboard.press("2")
    page.keyboard.press("1")  # edge-on: yes...
    page.keyboard.press("Backspace")  # ...no, back
    for _, name in PATH[1:]:
        page.keyboard.press(keys[name])
    assert page.is_visible("#box-step")
    page.keyboard.press("a")  # a 42-pixel box in the middle of the 424-pixel image, focused
    for _ in range(3):
        page.keyboard.press("ArrowRight")  # 4 image pixels each
    page.keyboard.press("Shift+ArrowDown")
    page.keyboard.press("Shift+ArrowDown")
    assert page.text_content("#box-count") == "1 clump marked"
    with page.expect_response(lambda r: r.url.endswith("/api/classifications/")) as resp:
        page.keyboard.press("Enter")
    assert resp.value.status == 201
    page.wait_for_function("id => document.getElementById('viewer').dataset.subjectId !== id", arg=str(first))
    assert_stored(site, resp.value.json()["id"], first, (203, 191, 42, 50), tol=0.01)
    assert errors == []
    ctx.close()


def test_offline_submission_is_kept_and_sent_later(browser, site, real_galaxies):
    ctx, page, errors = open_classify(browser, site, viewport={"width": 1280, "height": 800})
    first = subject_id(page)
    page.wait_for_function("document.querySelectorAll('#answers .answer').length === 3")
    time.sleep(0.3)  # let the prefetch of the next galaxies finish
    ctx.set_offline(True)
    page.keyboard.press("3")  # star or artifact: the tree ends at once, no clump task
    page.wait_for_selector("#sync:not([hidden])")
    page.wait_for_function("document.getElementById('sync').textContent.includes('not sent yet')")
    assert subject_id(page) != first  # the next galaxy is shown anyway
    assert Classification.objects.count() == 0
    assert page.evaluate("JSON.parse(localStorage.getItem('zoo.outbox.v1')).length") == 1

    ctx.set_offline(False)
    page.reload()  # even a reload (or a closed tab) keeps it: the outbox lives in localStorage
    page.wait_for_function("JSON.parse(localStorage.getItem('zoo.outbox.v1') || '[]').length === 0")
    c = Classification.objects.get()
    assert c.subject_id == first and c.answers == [{"question": "smooth-or-featured", "answer": "artifact"}]
    assert not c.boxes.exists()
    assert errors == []
    ctx.close()
