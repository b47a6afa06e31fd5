"""The study page in a real headless browser: Debian's ``chromium`` and ``chromium-driver`` (apt),
driven by Selenium. Every image loads, the console has no errors, a desktop screenshot is written.

The page is rendered from a small hand-made ``study.json`` (cells typed in here, summarised by the
study's own functions), so the test needs no training. Without chromium the test fails, naming
the packages to install: it never skips.
"""

from __future__ import annotations

import json
import shutil

import pytest

from selfprm.report.study_page import render_page
from selfprm.studies.study import summarise
from selfprm.types import to_strict_json


def hand_made_study() -> dict:
    cells = []
    curve = {"oracle": (0.70, 0.85), "outcome": (0.60, 0.78), "spr": (0.50, 0.52)}
    for key, dom, err in (("arith", "arith", 0.0), ("arith-fuzzy@0.2", "arith-fuzzy", 0.2), ("tools", "tools", None)):
        for src, (lo, hi) in curve.items():
            for n, v in ((50, lo), (200, hi)):
                for seed in range(3):
                    x = v - (0.1 if err else 0.0) * (src != "oracle") + 0.01 * seed
                    cells.append({
                        "source": src, "domain": dom, "domain_key": key, "judge_error": err, "trajectories": n,
                        "seed": seed, "step_auroc": x, "first_error_f1": x - 0.3,
                        "bon_accuracy": 0.9 - x / 2 if src == "spr" else x, "policy_tokens": 0,
                        "token_passes": 1000.0 * n, "step_ece": 0.1, "reliability": [[0.2, 0.3, 10], [0.8, 0.7, 30]],
                        "predicted_unsound_share": 0.0 if src == "spr" else 0.3, "lucky": 2,
                        "lucky_flagged": 0.5, "recovered": 1, "recovered_flagged": None,
                        # an undefined metric in one cell: the page must draw around it
                        **({"first_error_f1": float("nan")} if (src, n, seed) == ("outcome", 50, 2) else {})})
    quality = [{"domain_key": "arith", "source": s, "seed": 0, "label_accuracy": a, "label_auroc": a,
                "policy_tokens_per_step_label": t, "policy_tokens": 0, "token_passes": 0}
               for s, a, t in (("oracle", 1.0, 0), ("outcome", 0.8, 0), ("spr", None, 0))]
    pools = {"arith/seed-0": {"trajectories": 200, "wrong_answers": 0.3, "flawed": 0.4, "lucky": 0.05,
                              "recovered": 0.02, "steps_per_trajectory": 4.5}}
    study = summarise(cells, quality, pools, n_boot=50)
    study["real"] = {"skipped": "hand-made study: no real text"}
    # through strict JSON, as study.json is written and read (NaN -> null)
    return json.loads(json.dumps(to_strict_json(study)))


def _driver():
    browser = shutil.which("chromium")
    driver_bin = shutil.which("chromedriver")
    if browser is None or driver_bin is None:
        pytest.fail("the browser test needs Debian's chromium and chromium-driver: "
                    "apt-get update && apt-get install -y chromium chromium-driver "
                    f"(found chromium={browser}, chromedriver={driver_bin})")
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        pytest.fail("the browser test needs selenium: pip install -e '.[test]'")
    opts = webdriver.ChromeOptions()
    opts.binary_location = browser
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1366,900"):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(driver_bin), options=opts)


def test_page_is_self_contained(tmp_path):
    page = render_page(hand_made_study(), tmp_path / "index.html").read_text()
    assert page.count('src="data:image/png;base64,') == 7
    for remote in ("http://", "https://", "<script", "<link"):
        assert remote not in page
    assert "arith-fuzzy@0.2" in page and "Where it fails" in page
    study = hand_made_study()
    study["real"] = {"seeds": 5, "sources": {"human": {"f1": 0.61, "lo": 0.58, "hi": 0.64},
                                             "outcome": {"f1": 0.55, "lo": 0.52, "hi": 0.59,
                                                         "gap_vs_human": {"f1": -0.06, "lo": -0.09, "hi": -0.02}}},
                     "prmbench": {"skipped": "no model kept"}}
    page = render_page(study, tmp_path / "real.html").read_text()
    assert "gap vs human" in page and "-0.060" in page and "no model kept" in page
    band = {"mean": 0.62, "lo": 0.55, "hi": 0.7}
    study["real"]["prmbench"] = {"outcome": {
        "deception": {"records": 48, "prmscore": band, "step_auroc": {"mean": None, "lo": None, "hi": None}},
        "overall": {"records": 394, "prmscore": band, "step_auroc": band}}}
    page = render_page(study, tmp_path / "prmbench.html").read_text()
    assert "PRMBench error categories" in page and "deception (48)" in page and "overall (394)" in page
    assert "0.62 [0.55, 0.70]" in page and "n/a" in page  # an undefined metric (null in the JSON) says so


def test_page_in_headless_chromium(tmp_path):
    study = hand_made_study()
    path = render_page(study, tmp_path / "index.html")
    driver = _driver()
    try:
        driver.set_window_size(1366, 900)
        driver.get(path.resolve().as_uri())
        images = driver.execute_script(
            "return Array.from(document.images).map(i => [i.alt, i.complete, i.naturalWidth]);")
        assert len(images) == 7
        broken = [alt for alt, done, width in images if not done or width == 0]
        assert not broken, f"images that did not load: {broken}"
        severe = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
        assert not severe, f"console errors: {severe}"
        text = driver.find_element("tag name", "body").text
        assert study["answer"][:60] in text  # the page opens with the answer
        shot = tmp_path / "study_page_1366.png"
        assert driver.save_screenshot(str(shot)) and shot.stat().st_size > 10_000
        print(f"screenshot: {shot}")
    finally:
        driver.quit()
