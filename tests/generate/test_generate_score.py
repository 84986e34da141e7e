"""score_checkpoint: a fixed number of fakes per class, keep rate = kept / generated, ratios to the references."""
from __future__ import annotations

import pytest

from gen_toy import CLASSES, fast_generate_section, write_params, write_toy_cache, write_toy_checkpoint
from pipeline.config import load_params
from pipeline.generate.score import BAR, score_checkpoint


@pytest.mark.parametrize("filter_on", [False, True])
def test_scores_every_class_with_ratios_and_the_bar(tmp_path, filter_on):
    data = write_toy_cache(tmp_path / "data")
    ckpt = write_toy_checkpoint(tmp_path / "best.pt")
    section = fast_generate_section(filter={"enabled": filter_on})
    cfg = load_params(write_params(tmp_path / "params.yaml", section)).generate
    diversity = {"square": 0.9, "disc": 0.4, "bars": 0.8}
    score = score_checkpoint(ckpt, data, cfg, per_class=12, diversity=diversity)
    assert set(score["per_class"]) == set(CLASSES)
    for c, row in score["per_class"].items():
        assert row["generated"] == 12  # no top-up: exactly per_class generated
        assert row["keep_rate"] == pytest.approx(row["kept"] / 12)
        assert row["diversity_ratio"] == diversity[c]
        if row["fd"] is not None and row["fd_reference"]:
            assert row["fd_ratio"] == pytest.approx(row["fd"] / row["fd_reference"])
    overall = score["overall"]
    assert overall["diversity_ratio_lowest"] == 0.4 and score["bar"]["diversity"] is False
    kept = sum(r["kept"] for r in score["per_class"].values())
    assert overall["keep_rate_total"] == pytest.approx(kept / 36)
    assert score["bar"]["keep_rate"] == (overall["keep_rate_total"] >= BAR["keep_rate_min"])
    if filter_on:  # an untrained generator draws noise: the realism filter must reject most of it
        assert overall["keep_rate_total"] < 0.5
        assert sum(r.get("rejected_unrealistic", 0) for r in score["per_class"].values()) > 0
