"""The report: statistics columns, chart resolution, reliability bins, environment, and a real
browser (headless Chromium) loading every image and the tables."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from dropkit.experiments import report
from dropkit.experiments.compare import summarise
from dropkit.experiments.training import RunConfig

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                  "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync"]  # fmt: skip


def _runs(seeds: int = 5) -> list[tuple[RunConfig, dict]]:
    """Synthetic finished runs: two models, three techniques, ``seeds`` seeds (no training)."""
    rng = np.random.default_rng(0)
    runs = []
    for model, sites in (("mlp", 2), ("cnn", 3)):
        for technique, gain in (("none", 0.0), ("dropout", 0.03), ("gaussian", 0.0)):
            rate = 0.0 if technique == "none" else 0.1
            for seed in range(seeds):
                score = 0.8 + gain + 0.01 * rng.normal()
                epochs = np.arange(1, 11)
                counts = np.array([0, 0, 0, 1, 3, 10, 30, 60, 90, 166], dtype=float)
                confidence = counts * (np.arange(10) + 0.5) / 10
                result = {
                    "curves": {
                        "train_loss": (1 / epochs + 0.01 * rng.random(10)).tolist(),
                        "train_score": (0.9 - 0.5 / epochs).tolist(),
                        "val_loss": (1 / epochs + 0.002 * epochs).tolist(),
                        "val_score": (0.85 - 0.5 / epochs).tolist(),
                    },
                    "test_score": score,
                    "val_score": score,
                    "test_nll": 0.5,
                    "test_ece": 0.05,
                    "gap": 0.02,
                    "wall_s": 1.0,
                    "cpu_s": 1.0,
                    "reliability": {
                        "count": counts.tolist(),
                        "confidence": confidence.tolist(),
                        "correct": (confidence * 0.95).tolist(),
                    },
                }
                config = RunConfig("digits", model, technique, (rate,) * sites, seed, epochs=10)
                runs.append((config, result))
    return runs


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("report")
    runs = _runs()
    environment = report.environment(wall_s=12.5, jobs=2, runs=runs)
    return report.write_report(
        summarise(runs), directory, title="synthetic", environment=environment
    )


def test_statistics_columns_and_sections(written):
    from scipy import stats

    rows = {(r.model, r.technique): r for r in summarise(_runs())}
    row, base = rows[("cnn", "dropout")], rows[("cnn", "none")]
    differences = np.asarray(row.test_score) - np.asarray(base.test_score)
    interval = stats.t.interval(
        0.95, len(differences) - 1, loc=differences.mean(), scale=stats.sem(differences)
    )
    assert row.delta_ci == pytest.approx(interval)
    # Holm over the model's two techniques: the smaller p doubled, the larger not below it.
    raw = sorted([row.p_value_t, rows[("cnn", "gaussian")].p_value_t])
    adjusted = sorted([row.p_value_holm, rows[("cnn", "gaussian")].p_value_holm])
    assert adjusted == pytest.approx([2 * raw[0], max(2 * raw[0], raw[1])])
    document = written.read_text()
    assert document.count("<section id='model-") == 2
    assert document.count("class='summary'") == 2
    cell = f"{100 * row.delta_vs_none:+.2f} [{100 * interval[0]:+.2f}, {100 * interval[1]:+.2f}]"
    assert cell in document
    foot = document.split("<footer>")[1]
    for word in ("versions", "torch", "commit", "machine", "wall time", "12.5 s"):
        assert word in foot
    assert "white-space:nowrap" in document


def test_figures_are_150_dpi(written):
    from PIL import Image

    pictures = sorted(written.parent.glob("*.png"))
    assert {p.name.split("-")[0] for p in pictures} == {"curves", "final", "reliability"}
    for picture in pictures:
        with Image.open(picture) as image:
            assert report.DPI >= 150
            assert image.info["dpi"][0] == pytest.approx(report.DPI, abs=0.5)
            assert image.width >= 800  # large enough to read at 100%


def test_reliability_plots_only_well_filled_bins():
    counts = [0, 1, 19, 20, 50]
    table = {
        "count": counts,
        "confidence": [0, 0.15, 19 * 0.25, 20 * 0.35, 50 * 0.45],
        "correct": [0, 1, 10, 10, 40],
    }
    confidence, accuracy = report.reliable_bins(table, minimum=20)
    assert confidence == pytest.approx([0.35, 0.45])
    assert accuracy == pytest.approx([0.5, 0.8])


_CHECK = """<script>window.addEventListener('load', () => {
  const images = [...document.images];
  const cells = [...document.querySelectorAll('table.summary td')];
  const line = parseFloat(getComputedStyle(cells[0]).lineHeight) || 20;
  document.body.setAttribute('data-check', JSON.stringify({
    images: images.length,
    loaded: images.filter(i => i.complete && i.naturalWidth > 0).length,
    tables: document.querySelectorAll('table.summary').length,
    rows: document.querySelectorAll('table.summary tbody tr').length,
    wrapped: cells.filter(c => c.clientHeight > 1.8 * line).length}));
});</script>"""


def test_report_renders_in_headless_chromium(written, tmp_path):
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.skip("chromium absent (apt-get install chromium; .ci/run installs it)")
    page = tmp_path / "report.html"
    page.write_text(written.read_text().replace("</body>", _CHECK + "</body>"))
    command = [browser, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}",
               "--window-size=1300,1000", "--virtual-time-budget=10000"]  # fmt: skip
    dumped = subprocess.run(
        [*command, "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120
    )
    found = re.search(r'data-check="([^"]*)"', dumped.stdout)
    assert found, (dumped.returncode, dumped.stderr[-2000:])
    check = json.loads(found.group(1).replace("&quot;", '"'))
    assert check["images"] == 6 and check["loaded"] == 6  # 3 charts per model, all decoded
    assert check["tables"] == 2 and check["rows"] == 6
    assert check["wrapped"] == 0  # no table cell spans two lines
    shot = tmp_path / "report.png"
    subprocess.run(
        [*command, f"--screenshot={shot}", page.as_uri()], capture_output=True, timeout=120
    )
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
