"""scripts/bench.py: the quick report on tiny sizes has every section with measured numbers; the dvc timings."""
from __future__ import annotations

import dataclasses
import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

DVC = str(Path(sys.executable).parent / "dvc")
TINY = dict(gan_base_channels=(8,), gan_resolution_px=16, gan_batch=16, gan_images=32, gan_epochs=2,
            gan_naive_steps=3, gan_rounds=1, conv_repeats=2, ingest_max_per_class=0, ingest_real_data=False,
            gen_images=32, gen_naive_images=4, gen_checkpoints=1)


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench", REPO / "scripts" / "bench.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench"] = module  # dataclasses look their module up while the class is made
    spec.loader.exec_module(module)
    return module


def tiny_phantom_datasets(root: Path) -> list:
    """Small DICOM films and RGB cells written by the phantom generator, with params.yaml's data set settings."""
    from pipeline.config import PhantomConfig, SourceConfig, SplitConfig, dataset, load_params
    from pipeline.data.phantoms import write_cell_phantoms, write_mammography_phantoms

    phantom = PhantomConfig(mammo_patients=10, mammo_film_px=128, mammo_class_fractions=[0.4, 0.3, 0.3],
                            cell_px=32, cells_per_slide=3,
                            cell_counts={"normal": 12, "low_grade": 9, "high_grade": 9})
    write_mammography_phantoms(root / "mammography", phantom)
    write_cell_phantoms(root / "cells", phantom)
    params = load_params(REPO / "params.yaml")
    split = SplitConfig(val_fraction=0.2, test_fraction=0.3, seed=0)
    mammo = dataset(params, "mammography", "params.yaml")
    mammo = dataclasses.replace(
        mammo, resolution_px=32, split=split, patch=dataclasses.replace(mammo.patch, min_patch_px=16, max_patch_px=64),
        source=SourceConfig("dicom", str(root / "mammography"), str(root / "mammography" / "labels.csv")))
    cells = dataset(params, "cervical", "params.yaml")
    cells = dataclasses.replace(cells, resolution_px=32, split=split,
                                source=dataclasses.replace(cells.source, root=str(root / "cells")))
    return [("mammography", mammo), ("cervical", cells)]


def table(report: str, title: str) -> list[list[str]]:
    """The rows (cells as text) of the first table under the section ``## title``."""
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", report, re.S | re.M)
    assert match, f"section {title!r} missing"
    lines = [ln for ln in match.group(1).splitlines() if ln.startswith("|")]
    return [[c.strip() for c in ln.strip("|").split("|")] for ln in lines[2:]]


def number(cell: str) -> float:
    return float(cell.replace(",", ""))


def test_quick_report_has_every_section_with_numbers(bench, tmp_path, monkeypatch):
    monkeypatch.setitem(bench.SIZES, "quick", bench.Sizes(**TINY))
    datasets = tiny_phantom_datasets(tmp_path / "phantoms")
    monkeypatch.setattr(bench, "ingest_datasets", lambda sizes: (datasets, []))
    out = tmp_path / "benchmarks.md"
    assert bench.main(["--quick", "--threads", "1", "--sections", "machine,gan,ingest,generate,evaluate,memory",
                       "--out", str(out), "--json", str(tmp_path / "b.json")]) == 0
    report = out.read_text()

    machine = dict(table(report, "Machine"))
    assert machine["torch"].startswith(bench.torch.__version__) and machine["CPU"] and "GiB" in machine["RAM"]

    gan = table(report, "GAN step throughput and achieved FLOP/s")
    assert len(gan) >= 1
    for row in gan:  # this loop, naive, speed-up, its range, GFLOP/step, loop GFLOP/s, conv GFLOP/s, fraction
        assert all(number(c) > 0 for c in row[5:8] + row[9:]), row
        assert number(row[7]) == pytest.approx(number(row[5]) / number(row[6]), rel=0.05)
        assert re.fullmatch(r"[\d.]+-[\d.]+ \(1\)", row[8]), row  # per-round speed-up range, 1 round
    if not bench.torch.cuda.is_available():
        assert "CUDA rows" in report and "skipped, no CUDA device" in report

    ingest = {row[0]: row for row in table(report, "Ingest throughput")}
    assert set(ingest) == {"mammography", "cervical"} and ingest["mammography"][1] == "dicom"
    for row in ingest.values():  # files, images out, plain files/s, ingest files/s, ratio, seconds
        assert all(number(c) > 0 for c in row[2:]), row

    generate = table(report, "Generation throughput")
    assert len(generate) == 1 and all(number(c) > 0 for c in generate[0][3:])

    evaluate = table(report, "Evaluate-stage time")
    for row in evaluate:  # results/*/details.json of the last full repro, where this checkout has them
        assert number(row[1]) > 0 and int(row[4]) == int(row[2]) * int(row[3]), row

    memory = table(report, "Peak memory")
    assert [r[0] for r in memory][:2] == ["this benchmark process, after section machine",
                                          "this benchmark process, after section gan"]
    assert all(number(r[1]) > 10 for r in memory)
    assert json.loads((tmp_path / "b.json").read_text())["header"]["mode"] == "quick"


def test_unknown_section_is_a_usage_error(bench, capsys):
    with pytest.raises(SystemExit):
        bench.main(["--sections", "gan,nope"])
    assert "unknown nope" in capsys.readouterr().err


@pytest.mark.slow
def test_dvc_noop_and_full_clone_timings(bench, tmp_path):
    """No-op ``dvc repro`` in an up-to-date repo, then ``--full``: repro -f and no-op in a clone, with metrics."""
    repo = tmp_path / "repo"
    repo.mkdir()
    env = bench.tool_env()
    stage = ("import json, pathlib; p = pathlib.Path('results/toy'); p.mkdir(parents=True, exist_ok=True); "
             "(p / 'details.json').write_text(json.dumps({'time_s': 2.0, 'n_seeds': 2, 'arms': {'a': {}, 'b': {}}, "
             "'train_time_s_mean': 0.5}))")
    (repo / "stage.py").write_text(stage + "\n")
    (repo / "dvc.yaml").write_text("stages:\n  evaluate:\n    cmd: python stage.py\n    deps: [stage.py]\n"
                                   "    outs:\n      - results/toy\n")
    for cmd in (["git", "init", "-q"], ["git", "config", "user.email", "t@example.com"],
                ["git", "config", "user.name", "t"], [DVC, "init", "-q"], [DVC, "repro", "-q"],
                ["git", "add", "-A"], ["git", "commit", "-qm", "toy"]):
        subprocess.run(cmd, cwd=repo, env=env, check=True, capture_output=True)

    section, evaluate_dir = bench.dvc_section(repo, full=True, workdir=tmp_path)
    commands = [row[0] for row in section.rows]
    assert commands[1] == "no-op `dvc repro` (workspace up to date)", section.rows
    assert commands[2].startswith("end-to-end `dvc repro -f`") and commands[3] == "no-op `dvc repro` right after it"
    assert all(row[2] > 0 and row[4] > 0 for row in section.rows), section.rows
    assert not any("FAILED" in n for n in section.notes), section.notes
    assert evaluate_dir == tmp_path / "clone" / "results"
    rows = bench.evaluate_section(evaluate_dir, "timed").rows
    assert rows == [["toy", 2.0, 2, 2, 4, 0.5, None, 1.0, 2.0 / bench.BUDGET_END_TO_END_S]]
