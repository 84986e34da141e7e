"""The readers of other stages' outputs (through their record classes), and a report built from nothing at all."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from pipeline.report.config import ReportConfig
from pipeline.report.inputs import Evaluation, Paths, Unavailable, collect, evaluation_of, read_manifest, read_quality
from pipeline.report.report_page import Provenance, per_class_rates, render_report
from tests.report.fakes import CLASSES, evaluate_metrics, evaluate_summary, generate_metrics, make_project


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


def test_an_input_in_an_older_format_names_the_file_and_the_stage_to_rerun(tmp_path: Path) -> None:
    make_project(tmp_path, gans=("acgan",))
    details = tmp_path / "results" / "mammo" / "details.json"
    data = json.loads(details.read_text())
    del data["arms"]
    details.write_text(json.dumps(data))
    summary = tmp_path / "models" / "mammo" / "acgan" / "train_summary.json"
    summary.write_text(json.dumps({"steps": 4}))
    inputs = collect(tmp_path, "mammo")
    assert inputs.evaluation.message() == (
        "not available: run stage evaluate (evaluation metrics: results/mammo/details.json no key 'arms' (written "
        "by an older version); re-run: dvc repro evaluate@mammo)")
    assert "no key 'dataset' (written by an older version); re-run: dvc repro train_gan@mammo-acgan" in \
        inputs.gans[0].train_summary.message()
    html = render_report(inputs, ReportConfig(), Provenance(), "mammo")
    assert "re-run: dvc repro evaluate@mammo" in html


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
    assert [(a.name, a.gan) for a in ev.arms] == [("acgan", "acgan"), ("cdcgan", "cdcgan"), ("class_weighted", None),
                                                  ("classical", None), ("real_only", None)]  # details.json's order
    assert set(ev.confusion) == {"real_only", "class_weighted", "classical", "acgan", "cdcgan"}
    assert ev.confusion["acgan"].sum() == 28 and "2 seeds" in ev.confusion_note
    # a metric can be chosen; summary.json is needed too (evaluate writes both)
    chosen = collect(tmp_path, "mammo", metric="minority_recall").evaluation
    assert chosen.metric == "minority_recall" and chosen.arm("acgan").gain == pytest.approx(0.08)
    assert chosen.arm("acgan").label == "gain"
    (tmp_path / "results" / "mammo" / "summary.json").unlink()
    alone = collect(tmp_path, "mammo").evaluation
    assert isinstance(alone, Unavailable) and alone.path == "results/mammo/summary.json" and alone.stage == "evaluate"
    details, summary = evaluate_metrics("mammo", ("acgan",), None), evaluate_summary("mammo", ("acgan",), None)
    details.arms["synthetic_classical"] = details.arms["classical"]
    assert evaluation_of(details, summary, "cdcgan").arm("synthetic_classical").gan == "cdcgan"
    assert evaluation_of(details, summary).parent_run_id is None


def test_evaluation_written_by_the_classify_package_itself() -> None:
    """compare_arms + evaluate_details of pipeline.classify: the reader follows their format."""
    stats = pytest.importorskip("pipeline.classify.stats")
    evaluate = pytest.importorskip("pipeline.classify.evaluate")
    rng = np.random.default_rng(0)
    y = np.repeat([0, 1, 2], [10, 8, 6])
    proba = {arm: rng.dirichlet(np.ones(3), size=(2, len(y))) for arm in ("real_only", "classical", "acgan")}
    comparison = stats.compare_arms(y, proba, 2, {"real_only": "real_only", "best_non_gan": "classical"}, n_boot=200)
    extra = {"n_seeds": 2, "minority_class": "2", "classifier": "cnn", "classifier_detail": "cnn", "selection": "",
             "best_epoch_mean": {}, "epochs_run_mean": {}, "time_s": 1.0, "train_time_s_mean": 1.0,
             "train_cpu_s_mean": 1.0}
    details = evaluate.evaluate_details(comparison, "run42", best_non_gan="classical", **extra)
    summary = evaluate_summary("toy", ("acgan",), "run42")
    summary.gains = comparison["gains"]
    ev = evaluation_of(details, summary)
    assert ev.parent_run_id == "run42" and ev.best == "acgan" and ev.baseline == "real_only"
    acgan = ev.arm("acgan")
    assert acgan.gain == pytest.approx(comparison["gains"]["real_only"]["arms"]["acgan"][ev.metric]["estimate"],
                                       abs=1e-4)
    assert acgan.gain_ci is not None and acgan.label in ("gain", "loss", "no gain")
    assert acgan.gain_vs_non_gan is not None
    assert acgan.p_value == comparison["gains"]["real_only"]["arms"]["acgan"][ev.metric]["wilcoxon_p"]


def test_confusions_from_the_predictions_and_the_seeds_of_the_summary(tmp_path: Path) -> None:
    make_project(tmp_path, gans=("acgan",))
    (tmp_path / "results" / "mammo" / "predictions" / "classical.csv").unlink()
    ev = collect(tmp_path, "mammo").evaluation
    assert set(ev.confusion) == {"acgan", "real_only", "class_weighted"} and ev.confusion["acgan"].sum() == 28
    assert ev.confusion_note == "from the predictions on the test split, summed over 2 seeds"
    sens, spec = per_class_rates(np.array([[8, 2], [1, 9]]))
    assert np.allclose(sens, [0.8, 0.9]) and np.allclose(spec, [0.9, 0.8])


def test_manifest_reader_tolerates_missing_images(tmp_path: Path) -> None:
    make_project(tmp_path, gans=("acgan",))
    gan_dir = tmp_path / "data" / "synthetic" / "mammo" / "acgan"
    rows = read_manifest(Paths(tmp_path, "mammo"), "acgan")
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
    from pipeline.generate.records import REASONS
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
    details = evaluate_metrics("mammo", ("acgan",), None, discriminator_arm=True)
    summary = evaluate_summary("mammo", ("acgan",), None, discriminator_arm=True)
    assert evaluation_of(details, summary, "acgan").arm("acgan_discriminator").gan is None
