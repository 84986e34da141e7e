"""The defensive readers of other stages' outputs, and a report built from nothing at all."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from pipeline.report.config import ReportConfig
from pipeline.report.inputs import (Evaluation, Paths, Unavailable, _parse_evaluation, collect, read_confusions,
                                    read_manifest, read_quality)
from pipeline.report.report_page import Provenance, per_class_rates, render_report
from tests.report.fakes import CLASSES, evaluate_metrics, generate_metrics, make_project


def test_nothing_there_gives_not_available_sections(tmp_path: Path) -> None:
    inputs = collect(tmp_path, "mammo")
    assert isinstance(inputs.meta, Unavailable) and inputs.meta.stage == "ingest"
    assert isinstance(inputs.evaluation, Unavailable) and "run stage evaluate" in inputs.evaluation.message()
    assert inputs.gans == [] and inputs.review_scores is None
    html = render_report(inputs, ReportConfig(), Provenance(), "mammo")
    for stage in ("ingest", "train_gan", "generate", "evaluate"):
        assert f"not available: run stage{'s' if stage == 'train_gan' else ''} {stage}" in html or \
               f"not available: run stage {stage}" in html, stage
    assert "NOT FOR DIAGNOSIS" in html


def test_partial_outputs_name_the_missing_stage(tmp_path: Path) -> None:
    make_project(tmp_path, with_evaluation=False)
    (tmp_path / "plots" / "train_gan" / "mammo_cdcgan.csv").unlink()
    (tmp_path / "data" / "synthetic" / "mammo" / "acgan" / "details.json").write_text("{not json")
    inputs = collect(tmp_path, "mammo")
    by_name = {g.name: g for g in inputs.gans}
    assert isinstance(by_name["cdcgan"].history, Unavailable) and by_name["cdcgan"].history.stage == "train_gan"
    assert "unreadable" in by_name["acgan"].quality.message()
    html = render_report(inputs, ReportConfig(), Provenance(), "mammo")
    assert "not available: run stage evaluate" in html and "not available: run stage train_gan" in html


def test_quality_shapes_pair_values_with_references() -> None:
    shapes = [
        {"fd": 4.0, "real_vs_real": {"fd": 2.0}, "n_kept": 10},
        {"quality": {"fd": {"value": 4.0, "reference": 2.0}}},
        {"metrics": {"fd": 4.0, "fd_real_vs_real": 2.0}, "memorisation_threshold": 0.3, "mlflow_run_id": "x"},
    ]
    for shape in shapes:
        rows = read_quality(shape, CLASSES)
        assert [(r.metric, r.scope, r.value, r.reference) for r in rows] == [("fd", "all", 4.0, 2.0)], shape
    per_class = read_quality({"per_class": {"benign": {"kid": 0.1}}, "real_vs_real": {"per_class": {"benign":
                                                                                                   {"kid": 0.05}}},
                              "precision_malignant": 0.7}, CLASSES)
    assert {(r.metric, r.scope, r.value, r.reference) for r in per_class} == {
        ("kid", "benign", 0.1, 0.05), ("precision", "malignant", 0.7, None)}


def test_quality_of_the_generate_stage_format() -> None:
    rows = read_quality(generate_metrics("mammo", "acgan"), CLASSES)
    overall = {r.metric: r for r in rows if r.scope == "all"}
    assert set(overall) == {"fd", "kid", "precision", "recall", "density", "coverage", "diversity_ms_ssim"}
    assert overall["fd"].value == pytest.approx(4.15) and overall["fd"].reference == 2.0
    assert overall["fd"].value_generated == pytest.approx(4.15)
    malignant = [r for r in rows if r.scope == "malignant"]
    assert len(malignant) == 7 and all(r.reference is None and r.note.startswith("no reference: 1 validation")
                                       for r in malignant)


def test_evaluation_of_the_evaluate_stage_format(tmp_path: Path) -> None:
    make_project(tmp_path, gans=("acgan", "cdcgan"), parent_run_id="parent123")
    ev = collect(tmp_path, "mammo", synthetic_classical_gan="cdcgan").evaluation
    assert ev.metric == "macro_f1" and ev.baseline == "real_only" and ev.parent_run_id == "parent123"
    assert ev.best == "acgan" and ev.best_non_gan == "classical"  # best arm that adds synthetic images
    best = ev.arm("acgan")
    assert best.mean == 0.70 and best.ci == (0.63, 0.77) and best.gain == pytest.approx(0.08)
    assert best.gain_ci == (pytest.approx(0.02), pytest.approx(0.14)) and best.label == "gain"
    assert best.p_value == 0.5  # from summary.json's compare_arms blocks
    assert best.gain_vs_non_gan == pytest.approx(0.06)
    assert set(best.gains) == {"macro_f1", "balanced_accuracy", "minority_recall", "auc_macro"}
    assert [a.gan for a in ev.arms] == [None, None, None, "acgan", "cdcgan"]
    assert set(ev.confusion) == {"real_only", "class_weighted", "classical", "acgan", "cdcgan"}
    assert ev.confusion["acgan"].sum() == 28 and "2 seeds" in ev.confusion_note
    # details.json alone (no summary.json) is enough, and a metric can be chosen
    (tmp_path / "results" / "mammo" / "summary.json").unlink()
    alone = collect(tmp_path, "mammo", metric="minority_recall").evaluation
    assert alone.metric == "minority_recall" and alone.arm("acgan").gain == pytest.approx(0.08)
    assert alone.arm("acgan").p_value is None and alone.arm("acgan").label == "gain"
    data = evaluate_metrics("mammo", ("acgan",), None)
    data["arms"]["synthetic_classical"] = data["arms"]["classical"]
    assert _parse_evaluation(data, "cdcgan").arm("synthetic_classical").gan == "cdcgan"
    assert _parse_evaluation(data).parent_run_id is None


def test_evaluation_written_by_the_classify_package_itself() -> None:
    """compare_arms + metrics_json of pipeline.classify, when importable: the reader follows their format."""
    stats = pytest.importorskip("pipeline.classify.stats")
    evaluate = pytest.importorskip("pipeline.classify.evaluate")
    rng = np.random.default_rng(0)
    y = np.repeat([0, 1, 2], [10, 8, 6])
    proba = {arm: rng.dirichlet(np.ones(3), size=(2, len(y))) for arm in ("real_only", "classical", "acgan")}
    comparison = stats.compare_arms(y, proba, 2, {"real_only": "real_only", "best_non_gan": "classical"}, n_boot=200)
    metrics = evaluate.metrics_json(comparison, "run42", {"best_non_gan": "classical"})
    ev = _parse_evaluation(metrics)
    assert ev.parent_run_id == "run42" and ev.best == "acgan" and ev.baseline == "real_only"
    acgan = ev.arm("acgan")
    assert acgan.gain == pytest.approx(comparison["gains"]["real_only"]["arms"]["acgan"][ev.metric]["estimate"],
                                       abs=1e-4)
    assert acgan.gain_ci is not None and acgan.label in ("gain", "loss", "no gain")
    assert acgan.gain_vs_non_gan is not None


def test_evaluation_shapes() -> None:
    listed = _parse_evaluation({"metric": "macro_f1", "mlflow": {"parent_run_id": "abc"},
                                "arms": [{"name": "real", "macro_f1": 0.5, "macro_f1_ci": [0.4, 0.6]},
                                         {"name": "acgan_x2", "macro_f1": 0.58, "gan": "acgan"}]})
    assert listed.baseline == "real" and listed.best == "acgan_x2" and listed.parent_run_id == "abc"
    assert listed.arm("real").ci == (0.4, 0.6)
    assert listed.arm("acgan_x2").gain == np.float64(0.58 - 0.5) and listed.arm("acgan_x2").gain_ci is None
    gains_apart = _parse_evaluation({"arms": {"real_only": {"balanced_accuracy": {"mean": 0.6, "ci_low": 0.5,
                                                                                  "ci_high": 0.7}},
                                              "cdcgan": {"balanced_accuracy": {"mean": 0.65}}},
                                     "gains": {"cdcgan": {"balanced_accuracy": {"mean": 0.05, "ci": [-0.02, 0.1]}}},
                                     "mlflow_run_id": "run9"})
    assert gains_apart.metric == "balanced_accuracy" and gains_apart.arm("real_only").ci == (0.5, 0.7)
    assert gains_apart.arm("cdcgan").gain_ci == (-0.02, 0.1) and gains_apart.parent_run_id == "run9"


def test_confusions_from_predictions_with_integer_labels(tmp_path: Path) -> None:
    paths = Paths(tmp_path, "ds")
    paths.results_dir.mkdir(parents=True)
    (paths.results_dir / "predictions.csv").write_text("arm,seed,y_true,y_pred\nreal_only,0,0,0\nreal_only,1,2,1\n"
                                                       "acgan,0,1,1\n")
    matrices, note = read_confusions(paths, CLASSES, {})
    assert matrices["real_only"][0, 0] == 1 and matrices["real_only"][2, 1] == 1 and matrices["acgan"].sum() == 1
    assert "2 seeds" in note
    sens, spec = per_class_rates(np.array([[8, 2], [1, 9]]))
    assert np.allclose(sens, [0.8, 0.9]) and np.allclose(spec, [0.9, 0.8])


def test_manifest_reader_tolerates_moved_and_missing_images(tmp_path: Path) -> None:
    make_project(tmp_path, gans=("acgan",))
    gan_dir = tmp_path / "data" / "synthetic" / "mammo" / "acgan"
    rows = read_manifest(gan_dir / "manifest.csv", "manifest.csv")
    assert len(rows) == 21 and sum(r.kept for r in rows) == 15
    moved = next(r for r in rows if r.reason == "memorised")
    assert moved.path.parent.name == "memorised" and moved.nn_feature_distance is not None
    assert moved.nn_feature_relative == 0.3 and moved.nn_pixel_relative == 0.6  # from memorised/memorised.csv
    mirrored = next(r for r in rows if r.nn_mirrored)
    assert not mirrored.nn_real_id.endswith("#mirror") and mirrored.nn_real_id.startswith("train_")
    assert next(r for r in rows if r.reason == "low_confidence").path.parent.name == "rejected"
    for png in (gan_dir / "images").glob("syn_acgan_normal_*.png"):  # a stale manifest: its images are gone
        png.unlink()
    inputs = collect(tmp_path, "mammo")
    html = render_report(inputs, ReportConfig(samples_per_class=10), Provenance(), "mammo")
    assert "image file missing: syn_acgan_normal_00000.png" in html
    assert "(matched mirrored)" in html  # a neighbour found in its mirrored view is shown mirrored
    assert "closeness ratio</i>" in html and "below 0.41 in features or 0.52 in pixels" in html
    assert "flags 2% of real validation images" in html and "typically at feature distance 1.3" in html
    assert "not in the training split" not in html
    assert isinstance(inputs.evaluation, Evaluation) and inputs.evaluation.best == "acgan"


def test_no_patient_level_split_is_said(tmp_path: Path) -> None:
    make_project(tmp_path, gans=("acgan",), patient_level_split=False)
    html = render_report(collect(tmp_path, "mammo"), ReportConfig(), Provenance(), "mammo")
    assert "No patient-level split" in html
    meta = json.loads((tmp_path / "data" / "mammo" / "meta.json").read_text())
    meta["patient_level_split"] = True
    (tmp_path / "data" / "mammo" / "meta.json").write_text(json.dumps(meta))
    assert "No patient-level split" not in render_report(collect(tmp_path, "mammo"), ReportConfig(), Provenance(),
                                                         "mammo")


def test_every_exclusion_reason_of_generate_is_told_in_plain_words(tmp_path: Path) -> None:
    from pipeline.generate.run import REASONS
    from pipeline.report.report_page import REASON_TEXT

    assert set(REASON_TEXT) == set(REASONS) - {"kept"}
    make_project(tmp_path, gans=("acgan",))
    html = render_report(collect(tmp_path, "mammo"), ReportConfig(), Provenance(), "mammo")
    assert "1 excluded because they did not lie among the real training images of their class (realism check)" in html
    assert "2 excluded because a classifier could not recognise their class" in html


def test_the_semi_supervised_arm_is_shown_as_what_it_is(tmp_path: Path) -> None:
    """acgan_discriminator adds no images: not a GAN-image arm, not the best arm with synthetic images, not the
    best non-GAN arm; it is compared with real-only and with the best non-GAN arm like the GAN arms."""
    make_project(tmp_path, gans=("acgan", "cdcgan"), discriminator_arm=True)
    inputs = collect(tmp_path, "mammo", synthetic_classical_gan="acgan")
    ev = inputs.evaluation
    semi = ev.arm("acgan_discriminator")
    assert semi.gan is None and not semi.uses_synthetic and semi.discriminator == "acgan" and semi.uses_gan
    assert [a.name for a in ev.discriminator_arms] == ["acgan_discriminator"]
    assert ev.best == "acgan" and ev.best_non_gan == "classical"  # though it scores highest (0.75)
    assert semi.gain == pytest.approx(0.13) and semi.gain_vs_non_gan == pytest.approx(0.11)
    assert "acgan_discriminator" in ev.confusion
    html = render_report(inputs, ReportConfig(), Provenance(), "mammo")
    assert ("Semi-supervised arm <b>acgan_discriminator</b> (the trained ACGAN discriminator's class head, "
            "fine-tuned on the real training images; it adds no synthetic images), scored 0.750 against 0.620") in html
    assert "Against the best arm without synthetic images (classical): +0.110" in html
    assert "acgan_discriminator &#9675;" in html and "acgan_discriminator &#9679;" not in html
    assert "gain vs best non-GAN arm (classical)" in html
    # the other readers' name rules do not take it for a GAN-image arm either
    data = evaluate_metrics("mammo", ("acgan",), None, discriminator_arm=True)
    assert _parse_evaluation(data, "acgan").arm("acgan_discriminator").gan is None
