"""The filter cannot be fooled by images unlike any real one: junk fed through generate_synthetic is counted
"unrealistic", real images of the class pass at the calibrated rate, and realism off keeps the old rule.

Data: 30 training, 20 validation and 20 test images per class of three distinct shapes (square, disc,
bars). A generator that returns prepared images in place of its samples feeds the filter: per class,
uniform grey, Gaussian noise, a checkerboard, blank background crops, real test images of a
clearly different class labelled as this class, and the real validation and test images of the class itself.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

import pipeline.generate.run as run_module
from gen_toy import CLASSES, fast_generate_section, write_toy_cache, write_toy_checkpoint
from pipeline.config import build
from pipeline.data.cache import load_split
from pipeline.data.synthetic import read_manifest
from pipeline.errors import ConfigError
from pipeline.generate.config import GenerateConfig
from pipeline.generate.records import REASONS
from pipeline.generate.run import confidence_thresholds, generate_synthetic, write_outputs

N_PER_CLASS = (30, 30, 30)
N_VAL = (20, 20, 20)
JUNK = 4  # images of each junk kind
TARGETS = ("disc", "bars")
# Real test images of these classes are fed as fakes of the key class. Squares and discs are not here: at
# 32 px a square and a disc of about the same size are neighbours for this briefly trained classifier too
# (20-30% of squares land inside the disc balls), which is for the confidence filter to sort out.
OTHER_CLASSES = {"disc": ("bars",), "bars": ("square", "disc")}
PX = 32


def junk_images(rng: np.random.RandomState) -> dict[str, torch.Tensor]:
    """Images no real class looks like, at the toy data's grey levels (background 30, shapes 220)."""
    yy, xx = np.mgrid[:PX, :PX]
    shape = (JUNK, 1, PX, PX)

    def u8(a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.clip(a, 0, 255).astype(np.uint8))

    return {"grey": u8(np.full(shape, 128.0)),
            "gaussian_noise": u8(rng.normal(128, 50, shape)),
            "checkerboard": u8(np.broadcast_to(30 + 190 * ((yy // 4 + xx // 4) % 2), shape).copy()),
            "blank": u8(30 + rng.normal(0, 8, shape))}  # background only, as in the toy images


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    root = tmp_path_factory.mktemp("realism")
    data = write_toy_cache(root / "data" / "toy", PX, train_counts=N_PER_CLASS, val_counts=N_VAL)
    checkpoint = write_toy_checkpoint(root / "models" / "best.pt")
    val, test = load_split(data, "val"), load_split(data, "test")
    rng = np.random.RandomState(0)
    junk = junk_images(rng)
    queues, kinds = {}, {}  # class index -> images in generation order, and the kind of each
    for name in TARGETS:
        c, other = CLASSES.index(name), [CLASSES.index(o) for o in OTHER_CLASSES[name]]
        parts = [*junk.items(),
                 ("other_class", torch.from_numpy(test.images[np.isin(test.labels, other)][::4])),
                 ("real_val", torch.from_numpy(val.images[val.labels == c])),
                 ("real_test", torch.from_numpy(test.images[test.labels == c]))]
        queues[c] = torch.cat([x for _, x in parts])
        kinds[name] = [kind for kind, x in parts for _ in range(len(x))]
    return root, data, checkpoint, queues, kinds


def run_filter(toy, **filter_overrides):
    """generate_synthetic with the prepared images in place of the generator's; every image is generated once."""
    root, data, checkpoint, queues, kinds = toy
    section = fast_generate_section(classifier={"epochs": 25, "batch_size": 16, "cache_dir": str(root / "cache")},
                                    filter={"enabled": True, **filter_overrides},
                                    target={"mode": "counts", "counts": {n: len(kinds[n]) for n in TARGETS},
                                            "max_attempts_factor": 1.0},
                                    metrics={"kid_subsets": 2, "fake_draws": 1, "diversity_pairs": 5})
    served = {c: 0 for c in queues}

    def prepared(G, seeds, class_index, z_dim):
        start = served[class_index]
        served[class_index] += len(seeds)
        return queues[class_index][start:start + len(seeds)].clone()

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(run_module, "sample", prepared)
        run = generate_synthetic(build(GenerateConfig, section, "generate"), checkpoint, data, "toy", "cdcgan")
    assert all(served[CLASSES.index(n)] == len(kinds[n]) for n in TARGETS)  # each image judged exactly once
    return run


def reasons_by_kind(run, kinds) -> dict[str, dict[str, list[str]]]:
    out: dict[str, dict[str, list[str]]] = {}
    for r in run.records:
        out.setdefault(r.class_name, {}).setdefault(kinds[r.class_name][r.index], []).append(r.reason)
    return out


@pytest.fixture(scope="module")
def with_realism(toy):
    return run_filter(toy, realism_val_pass=0.9)


@pytest.fixture(scope="module")
def without_realism(toy):
    return run_filter(toy, realism=False)


def test_junk_and_other_classes_are_rejected_as_unrealistic(toy, with_realism):
    kinds = toy[4]
    by_kind = reasons_by_kind(with_realism, kinds)
    for name in TARGETS:
        for kind in ("grey", "gaussian_noise", "checkerboard", "blank"):
            assert by_kind[name][kind] == ["unrealistic"] * JUNK, (name, kind)
        assert set(by_kind[name]["other_class"]) == {"unrealistic"}, name
        n_rejected = 4 * JUNK + len(by_kind[name]["other_class"])
        counts = with_realism.metrics.counts[name]
        n_real = len(by_kind[name]["real_val"]) + len(by_kind[name]["real_test"])
        real_unrealistic = sum(r == "unrealistic" for kind in ("real_val", "real_test") for r in by_kind[name][kind])
        assert counts["unrealistic"] == n_rejected + real_unrealistic
        assert counts["generated"] == n_rejected + n_real == sum(counts[r] for r in REASONS)
        assert counts["kept"] >= 0.8 * n_real  # real images of the class get through
    totals = with_realism.metrics.totals
    assert totals["unrealistic"] == sum(with_realism.metrics.counts[n]["unrealistic"] for n in TARGETS)
    assert set(REASONS) <= set(totals)


def test_real_images_of_the_class_pass_at_the_calibrated_rate(with_realism, toy):
    kinds = toy[4]
    realism = with_realism.metrics.filter["realism"]
    assert realism["enabled"] and realism["k"] == 3 and realism["val_pass_target"] == 0.9
    for name in TARGETS:
        cal = realism["per_class"][name]
        assert cal["tested"] and cal["scale_from"] == "class" and cal["n_val"] == 20 and cal["scale"] >= 1.0
        assert cal["real_val_pass_rate"] >= 0.9
        mine = [r for r in with_realism.records if r.class_name == name]
        for kind, low in (("real_val", cal["real_val_pass_rate"]), ("real_test", 0.75)):
            scales = np.array([r.ball_scale for r in mine if kinds[name][r.index] == kind])
            passed = float(np.mean(scales <= cal["scale"]))
            if kind == "real_val":  # the images it was calibrated on: exactly the recorded rate
                assert passed == pytest.approx(cal["real_val_pass_rate"])
            else:  # held-out real images: about the target (20 images: one is 5 points)
                assert passed >= low, (name, passed)


def test_each_image_is_scored_on_its_own_by_the_classifier_in_eval_mode(toy, with_realism):
    """Confidence and realism of an image do not depend on the batch it came in (BatchNorm in eval mode)."""
    from pipeline.generate.classifier import features_and_probabilities, load_or_train_classifier
    from pipeline.generate.config import ClassifierConfig

    root, data, *_ = toy
    train = load_split(data, "train")
    cfg = ClassifierConfig(epochs=25, batch_size=16, cache_dir=str(root / "cache"))
    net = load_or_train_classifier(torch.from_numpy(train.images), torch.from_numpy(train.labels), 3, cfg,
                                   root / "cache" / "toy")
    assert not net.training
    for r in with_realism.records[::7]:
        _, probs = features_and_probabilities(net, torch.from_numpy(r.image[None]))
        assert float(probs[0, CLASSES.index(r.class_name)]) == pytest.approx(r.confidence, abs=1e-5)


def test_rejected_images_are_written_to_rejected_with_their_reason(tmp_path, with_realism):
    out = write_outputs(with_realism, tmp_path / "syn")
    rows = read_manifest(out / "manifest.csv")
    unrealistic = [r for r in rows if r.reason == "unrealistic"]
    assert len(unrealistic) == with_realism.metrics.totals["unrealistic"]
    assert all(r.path.startswith("rejected/") and not r.kept for r in unrealistic)
    assert all((out / r.path).is_file() for r in unrealistic)


def test_realism_off_is_the_old_rule(toy, without_realism):
    """memorised, else low_confidence below min_confidence, else kept; and confidence alone keeps junk."""
    assert without_realism.metrics.filter["realism"] == {"enabled": False}
    threshold = without_realism.metrics.filter["confidence_threshold"]
    assert all(0.0 <= t <= 0.5 for t in threshold.values())  # calibrated on real val images, capped at 0.5
    for r in without_realism.records:
        memorised = r.reason == "memorised"
        assert r.reason == ("memorised" if memorised else "low_confidence" if r.confidence < threshold[r.class_name]
                            else "kept")
        assert np.isnan(r.ball_scale)
    assert without_realism.metrics.totals["unrealistic"] == 0
    by_kind = reasons_by_kind(without_realism, toy[4])
    kept_junk = sum(reasons.count("kept") for name in TARGETS for kind, reasons in by_kind[name].items()
                    if kind in ("grey", "gaussian_noise", "checkerboard", "blank"))
    assert kept_junk >= JUNK  # the defect: confidence alone keeps junk (measured: all 16 fed as disc)


def test_a_fake_failing_several_tests_is_counted_under_the_first(with_realism, without_realism):
    """Copy gate, then realism, then confidence: the same images (same order) in the runs with and without realism."""
    off = {(r.class_name, r.index): r.reason for r in without_realism.records}
    pairs = [(r.reason, off[r.class_name, r.index]) for r in with_realism.records]
    assert len(pairs) == len(off)
    assert all((on == "memorised") == (old == "memorised") for on, old in pairs)  # the gate comes first
    assert all(old in ("kept", "low_confidence") for on, old in pairs if on == "unrealistic")
    assert ("unrealistic", "low_confidence") in pairs  # failed both: counted under realism (bars junk)
    assert all(old == "low_confidence" for on, old in pairs if on == "low_confidence")


def test_realism_spaces_are_checked_in_params():
    with pytest.raises(ConfigError, match="realism_spaces.*each space once"):
        build(GenerateConfig, {"filter": {"realism_spaces": ["classifier", "classifier"]}}, "generate")
    with pytest.raises(ConfigError, match=r"realism_spaces\[0\]: 'pixels' is not allowed"):
        build(GenerateConfig, {"filter": {"realism_spaces": ["pixels"]}}, "generate")
    with pytest.raises(ConfigError, match="realism_val_pass: 0.2 is out of range"):
        build(GenerateConfig, {"filter": {"realism_val_pass": 0.2}}, "generate")


def test_confidence_threshold_is_calibrated_on_real_validation_images():
    """A class whose real images the classifier finds hard gets a lower threshold; never above the cap."""
    torch.manual_seed(0)
    y = torch.tensor([0] * 20 + [1] * 20 + [2] * 3)
    own = torch.cat([torch.linspace(0.1, 0.5, 20), torch.linspace(0.8, 0.99, 20), torch.tensor([0.01, 0.02, 0.03])])
    p = torch.zeros(len(y), 3)
    p[torch.arange(len(y)), y] = own
    p[torch.arange(len(y)), (y + 1) % 3] = 1 - own
    t = confidence_thresholds(p, y, cap=0.5, val_pass=0.8, min_val_images=10)
    assert t[0] == pytest.approx(float(torch.quantile(own[:20].double(), 0.2)))  # 80 % of class 0 pass
    assert float((own[:20] >= t[0]).double().mean()) >= 0.8
    assert t[1] == 0.5  # an easy class keeps the cap
    assert t[2] == pytest.approx(min(0.5, float(torch.quantile(own.double(), 0.2))))  # 3 images: pooled
    assert confidence_thresholds(p, y, cap=0.5, val_pass=0.0, min_val_images=10) == [0.5, 0.5, 0.5]
