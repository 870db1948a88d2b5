"""``goldenhour diagnose PATH...`` over real NIH images: a folder with a bad
file in it, JSON Lines, the CSV table, exit statuses, worker processes; the
OpenVINO compile cache; the start-up benchmark."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from shared.findings import FINDINGS

pytestmark = pytest.mark.realdata
REPO = Path(__file__).parents[2]


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "shared.cli", *args], capture_output=True, text=True,
                          timeout=300, cwd=REPO, env=env)


@pytest.fixture
def screening(data_folder: Path, tmp_path: Path) -> Path:
    """Three real NIH images, a real DICOM without a suffix in a sub-folder, and a broken PNG."""
    folder = tmp_path / "screening"
    (folder / "ward").mkdir(parents=True)
    for image in sorted((data_folder / "nih-cxr14-sample" / "images").glob("*.png"))[:3]:
        shutil.copy(image, folder / image.name)
    shutil.copy(data_folder / "dicom" / "siim-cxr-monochrome2.dcm", folder / "ward" / "IM0001")
    (folder / "ward" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    (folder / "ward" / "notes.txt").write_text("not an image, not looked at")
    return folder


def test_a_folder_with_a_bad_file_in_it(screening: Path, tmp_path: Path) -> None:
    table = tmp_path / "batch.csv"
    result = _cli("diagnose", str(screening), "--json", "--csv", str(table))
    assert result.returncode == 1, result.stderr  # some failed, not all
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    paths = {Path(line["path"]).relative_to(screening).as_posix() for line in lines}
    expected = {p.name for p in screening.glob("*.png")} | {"ward/IM0001", "ward/broken.png"}
    assert paths == expected
    failed = [line for line in lines if "error" in line]
    assert [Path(f["path"]).name for f in failed] == ["broken.png"] and "PNG" in failed[0]["error"]
    assert "cannot diagnose" in result.stderr and "broken.png" in result.stderr
    diagnosed = [line for line in lines if "error" not in line]
    for line in diagnosed:
        assert [f["finding"] for f in line["findings"]] == [str(f) for f in FINDINGS]
        assert {"probability", "threshold", "sensitivity", "specificity"} <= set(line["findings"][0])
        assert len(line["top3"]) == 3 and line["model"]["name"] == "chest-effnetlite0"
    assert {line["image"]["format"] for line in diagnosed} == {"png", "dicom"}
    with table.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == len(lines)
    by_path = {row["path"]: row for row in rows}
    for line in diagnosed:
        row = by_path[line["path"]]
        for score in line["findings"]:
            assert float(row[score["finding"]]) == pytest.approx(score["probability"], abs=1e-4)
        suspected = {s["finding"] for s in line["findings"] if s["probability"] >= s["threshold"]}
        assert set(filter(None, row["suspected"].split(";"))) == suspected
        assert row["top3"].split(";") == line["top3"] and int(row["triage_level"]) == line["triage"]["level"]
        assert row["error"] == ""
    assert by_path[failed[0]["path"]]["error"] == failed[0]["error"]


def test_all_failed_exits_2_and_a_quoted_glob_expands(screening: Path) -> None:
    everything_bad = _cli("diagnose", str(screening / "ward" / "broken.png"), str(screening / "absent.dcm"))
    assert everything_bad.returncode == 2
    assert "absent.dcm" in everything_bad.stderr and "no such file" in everything_bad.stderr
    lines = _cli("diagnose", str(screening / "*.png"), "--no-progress")
    assert lines.returncode == 0, lines.stderr
    assert sorted(line.split(":")[0] for line in lines.stdout.splitlines()) == sorted(
        str(p) for p in screening.glob("*.png"))
    assert "3 diagnosed, 0 failed" in lines.stderr and "not for clinical use" in lines.stderr


def test_workers_give_the_same_results_in_order(screening: Path) -> None:
    one = _cli("diagnose", str(screening), "--json")
    two = _cli("diagnose", str(screening), "--json", "--workers", "2")
    assert one.returncode == two.returncode == 1, two.stderr
    first, second = ([json.loads(line) for line in r.stdout.splitlines()] for r in (one, two))
    assert [line["path"] for line in first] == [line["path"] for line in second]
    for a, b in zip(first, second, strict=True):
        assert ("error" in a) == ("error" in b)
        for x, y in zip(a.get("findings", []), b.get("findings", []), strict=True):
            assert x["probability"] == pytest.approx(y["probability"], abs=2e-3)  # 1 vs 2 threads


def test_openvino_loads_the_compiled_model_from_its_cache(tmp_path: Path, data_folder: Path) -> None:
    from PIL import Image

    from edge_agent.backends import OpenVinoConfig
    from edge_agent.classifier import load_classifier

    image = sorted((data_folder / "nih-cxr14-sample" / "images").glob("*.png"))[0]
    with Image.open(image) as opened:
        pixels = np.asarray(opened.convert("L"))
    cold = load_classifier(OpenVinoConfig(cache_dir=tmp_path / "cache"))
    warm = load_classifier(OpenVinoConfig(cache_dir=tmp_path / "cache"))
    assert not cold.backend.loaded_from_cache and warm.backend.loaded_from_cache  # type: ignore[attr-defined]
    assert any((tmp_path / "cache").glob("*.blob"))
    assert warm.predict(pixels) == pytest.approx(cold.predict(pixels), abs=1e-5)
    # A cache folder that cannot be made (a file is in the way) only turns the cache off.
    (tmp_path / "in-the-way").write_text("")
    uncached = load_classifier(OpenVinoConfig(cache_dir=tmp_path / "in-the-way" / "cache"))
    assert uncached.backend.cache_dir is None  # type: ignore[attr-defined]
    assert uncached.predict(pixels) == pytest.approx(cold.predict(pixels), abs=1e-5)


def test_startup_benchmark_prints_its_timings(data_folder: Path) -> None:
    result = _cli("bench", "startup", "--runs", "2", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    for name in ("goldenhour --help", "diagnose, compile cache warm", "diagnose, compile cache cold"):
        stats = report[name]
        assert 0 < stats["min"] <= stats["median"] <= stats["max"] and stats["runs"] == 2
    # --help imports no service: it must stay well below a diagnosis (which loads numpy and a model).
    assert report["goldenhour --help"]["median"] < report["diagnose, compile cache warm"]["median"]
