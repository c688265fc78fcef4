"""The --html report of lintorch diagnose, rendered in a real headless
Chromium: every plot is there, loaded and not blank, and the page fetched
nothing but itself and its inline images.

The browser test does not skip because Chromium is missing, unless
LINTORCH_NO_BROWSER=1 says so on purpose (.ci/run installs Chromium)."""

import io
import os
import re

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("matplotlib")

import browser  # noqa: E402
import diagnose_runs  # noqa: E402
from lintorch.diagnose import html  # noqa: E402

PLOTS = ("loss", "lr", "gradients", "updates", "activations")


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    run = diagnose_runs.run_all()["flat_scheduler_per_batch.py"]
    path = tmp_path_factory.mktemp("report") / "report.html"
    html.write(str(path), {k: v for k, v in run.items() if not k.startswith("_")}, run["_series"])
    return path


def test_page_is_self_contained(page):
    text = page.read_text()
    assert "<script" not in text
    assert not re.search(r"""(src|href)\s*=\s*["'](?!data:)""", text), "only data: URIs may be referenced"
    assert not re.search(r"url\(", text)
    for key in PLOTS:
        assert 'data-plot="%s"' % key in text
    assert "1. epoch-based scheduler" in text and "Why:" in text and "Fix:" in text


def test_write_is_atomic_and_keeps_nothing_else(tmp_path, page):
    target = tmp_path / "r.html"
    target.write_text("old")
    run = diagnose_runs.run_all()["classifier_fixed.py"]
    html.write(str(target), {k: v for k, v in run.items() if not k.startswith("_")}, run["_series"])
    assert "Nothing found explains this symptom" in target.read_text()
    assert os.listdir(tmp_path) == ["r.html"]


def _browser():
    binary = browser.find()
    if binary is None:
        if os.environ.get("LINTORCH_NO_BROWSER") == "1":
            pytest.skip("LINTORCH_NO_BROWSER=1: no browser on purpose")
        pytest.fail("no Chromium found: install it (Debian: apt-get install chromium) or set LINTORCH_NO_BROWSER=1")
    return binary


def test_plots_render_in_headless_chromium_and_are_not_blank(page):
    from PIL import Image

    shot = browser.render(_browser(), str(page))
    assert all(u == shot["url"] or u.startswith("data:") for u in shot["requests"]), shot["requests"]
    boxes = {b["plot"]: b for b in shot["boxes"]}
    assert sorted(boxes) == sorted(PLOTS)
    image = Image.open(io.BytesIO(shot["png"])).convert("RGB")
    background = image.getpixel((5, 5))
    for key, box in boxes.items():
        assert box["loaded"], key
        assert box["width"] > 300 and box["height"] > 100, (key, box)
        crop = image.crop((int(box["x"]), int(box["y"]), int(box["x"] + box["width"]), int(box["y"] + box["height"])))
        pixels = list(crop.get_flattened_data() if hasattr(crop, "get_flattened_data") else crop.getdata())
        drawn = sum(1 for p in pixels if max(abs(a - b) for a, b in zip(p, background)) > 24)
        colours = len(set(pixels))
        assert drawn / len(pixels) > 0.03 and colours > 20, (key, drawn / len(pixels), colours)
    # the page's own background is plain: the drawn pixels come from the images
    assert background == (255, 255, 255)
