"""Registered generators: train_gan's registration helper, then generate from models:/<name>/<version>, @alias and
/latest, with a local sqlite store and with a local ``mlflow server``; the same images as from the checkpoint."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from gen_toy import CLASSES, fast_generate_section, write_params, write_toy_checkpoint
from pipeline.data.synthetic import read_manifest
from pipeline.errors import DataError
from pipeline.gan.train import register_best_generator
from pipeline.generate.registry import load_generator_source
from pipeline.tracking import start_run
from stages.generate import main as generate

BEST = {"score": 12.5, "epoch": 7, "fd": {"square": 10.0, "disc": 12.0, "bars": float("nan")},
        "diversity": {"square": 0.9, "disc": 0.8, "bars": 0.7}}


def register(checkpoint: Path, dataset: str = "toy", model: str = "cdcgan") -> str:
    with start_run("train_gan", dataset, model) as tracker:
        return register_best_generator(tracker, checkpoint, dataset, model, BEST)


def kept_images(out: Path) -> dict[str, bytes]:
    """File name -> PNG bytes of the kept images (the manifest's checkpoint column aside, the outputs)."""
    rows = read_manifest(out / "manifest.csv")
    return {r.path: (out / r.path).read_bytes() for r in rows if r.kept}


def draw(source: str | Path, out: Path, data: Path, params: Path, *extra: str) -> dict[str, bytes]:
    generate(["--checkpoint", str(source), "--label", "bars", "--label", "disc", "-n", "3", "--out", str(out),
              "--data-dir", str(data), "--params", str(params), *extra])
    return kept_images(out)


@pytest.fixture
def params(tmp_path):
    return write_params(tmp_path / "params.yaml", fast_generate_section())


def round_trip(tmp_path: Path, toy_data: Path, params: Path, uri: str) -> None:
    """Register twice, point an alias at version 1, then generate from each form of URI and from the file."""
    import mlflow

    ckpt = write_toy_checkpoint(tmp_path / "best.pt")
    assert register(ckpt) == "1"
    assert register(write_toy_checkpoint(tmp_path / "other.pt", seed=1)) == "2"
    client = mlflow.MlflowClient(uri)
    client.set_registered_model_alias("toy-cdcgan", "champion", "1")

    version = client.get_model_version("toy-cdcgan", "1")
    assert version.tags["dataset"] == "toy" and version.tags["gan"] == "cdcgan"
    assert version.tags["classes"] == ",".join(CLASSES) and version.tags["resolution_px"] == "32"
    assert version.tags["best_quality_fd"] == "12.5" and version.tags["fd.disc"] == "12"
    assert "fd.bars" not in version.tags and version.tags["diversity_ratio.bars"] == "0.7"  # nan is left out
    assert "toy" in client.get_registered_model("toy-cdcgan").description
    run = client.get_run(version.run_id)
    assert run.data.tags["generator_registered_as"] == "models:/toy-cdcgan/1"
    info = mlflow.models.get_model_info("models:/toy-cdcgan/1")
    assert [s.name for s in info.signature.inputs.inputs] == ["z", "y"]  # signature and input example logged
    model_dir = Path(mlflow.artifacts.download_artifacts("models:/toy-cdcgan/1", dst_path=str(tmp_path / "dl")))
    example = json.loads((model_dir / "extra_files" / "input_example.json").read_text())
    assert len(example["z"]) == 2 and len(example["z"][0]) == 16 and example["y"] == [0, 1]

    loaded = load_generator_source("models:/toy-cdcgan@champion")
    assert (loaded.model, loaded.dataset, loaded.classes, loaded.resolution_px) == ("cdcgan", "toy", CLASSES, 32)
    assert loaded.label == "models:/toy-cdcgan/1" and loaded.mlflow_run_id == version.run_id

    from_file = draw(ckpt, tmp_path / "from_file", toy_data, params)
    assert len(from_file) == 6
    for n, source in enumerate(("models:/toy-cdcgan/1", "models:/toy-cdcgan@champion")):
        assert draw(source, tmp_path / f"from_registry{n}", toy_data, params) == from_file, source
    latest = draw("models:/toy-cdcgan/latest", tmp_path / "latest", toy_data, params)
    assert latest != from_file  # version 2: other weights
    rows = read_manifest(tmp_path / "from_registry1" / "manifest.csv")
    assert {r.checkpoint for r in rows} == {"models:/toy-cdcgan/1"}  # the alias resolved to its version


def test_round_trip_with_a_local_sqlite_store(tmp_path, toy_data, params, monkeypatch):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.delenv("PIPELINE_TRACKING")
    monkeypatch.chdir(tmp_path)  # the default artifact root (./mlruns) is relative to the working directory
    round_trip(tmp_path, toy_data, params, uri)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def mlflow_server(tmp_path):
    """A local ``mlflow server`` (sqlite backend, proxied artifacts) for the test; skipped when it does not answer
    within 45 s (a busy machine)."""
    port = free_port()
    log = (tmp_path / "server.log").open("w")
    proc = subprocess.Popen([sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
                             "--workers", "1", "--backend-store-uri", f"sqlite:///{tmp_path / 'server.db'}",
                             "--artifacts-destination", str(tmp_path / "server_artifacts")],
                            cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                            env={**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true",
                                 # no server-side job runner (huey consumers): not needed here, and it starts faster
                                 "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"})
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 45
        while True:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.skip(f"mlflow server did not answer on {url} within 45 s (exit {proc.poll()}); "
                            f"see {tmp_path / 'server.log'}")
            time.sleep(0.5)
        yield url
    finally:
        for sig, wait_s in ((signal.SIGTERM, 10), (signal.SIGKILL, 5)):  # the server and the workers it started
            try:
                os.killpg(proc.pid, sig)
                proc.wait(wait_s)
                break
            except ProcessLookupError:
                break
            except subprocess.TimeoutExpired:
                continue
        log.close()


@pytest.mark.slow
def test_round_trip_with_a_local_mlflow_server(tmp_path, toy_data, params, monkeypatch, mlflow_server):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server)
    monkeypatch.delenv("PIPELINE_TRACKING")
    monkeypatch.chdir(tmp_path)
    round_trip(tmp_path, toy_data, params, mlflow_server)


def test_wrong_uris_stop_with_one_line(tmp_path, toy_data, params, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DataError, match=r"no MLflow store at .*mlflow.db; run the train_gan stage"):
        load_generator_source("models:/toy-cdcgan/1")
    monkeypatch.delenv("PIPELINE_TRACKING")
    register(write_toy_checkpoint(tmp_path / "best.pt"))
    cases = {
        "models:/toy-acgan/1": r"no registered model 'toy-acgan' in .* \(registered: toy-cdcgan\)",
        "models:/toy-cdcgan/4": r"'toy-cdcgan' has no version 4 \(versions 1\)",
        "models:/toy-cdcgan@champion": r"'toy-cdcgan' has no alias 'champion' \(aliases: none\); set one with",
        "models:/toy-cdcgan": r"not a registered-model URI; write models:/<name>/<version>",
    }
    for uri, match in cases.items():
        with pytest.raises(DataError, match=match) as err:
            load_generator_source(uri)
        assert "\n" not in str(err.value) and str(err.value).startswith(uri)
    with pytest.raises(DataError, match="a cdcgan generator, not acgan"):
        generate(["--checkpoint", "models:/toy-cdcgan/1", "--gan", "acgan", "--label", "bars", "-n", "1",
                  "--out", str(tmp_path / "o"), "--data-dir", str(toy_data), "--params", str(params)])
    with pytest.raises(DataError, match="trained on data set 'toy', not 'other'"):
        load_generator_source("models:/toy-cdcgan/1", dataset="other")
    assert not (tmp_path / "o").exists()


def test_registered_generator_checked_against_the_data(tmp_path, toy_data, params, monkeypatch):
    """A registered 16 px generator for a 32 px data set: the same one-line error as for its checkpoint."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.delenv("PIPELINE_TRACKING")
    monkeypatch.chdir(tmp_path)
    register(write_toy_checkpoint(tmp_path / "small.pt", size_px=16))
    with pytest.raises(DataError, match="models:/toy-cdcgan/1: makes 16 px images but data set 'toy' is 32 px"):
        draw("models:/toy-cdcgan/1", tmp_path / "o", toy_data, params)


def test_console_script_lists_sets_an_alias_and_generates(tmp_path, toy_data, params, monkeypatch):
    """``medsynth models`` (list, --set-alias) and ``medsynth generate --checkpoint models:/...@alias`` end to end."""
    from tests.test_cli import medsynth

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.delenv("PIPELINE_TRACKING")
    monkeypatch.chdir(tmp_path)
    register(write_toy_checkpoint(tmp_path / "best.pt"))
    env = {"MLFLOW_TRACKING_URI": uri}
    aliased = medsynth("models", "--set-alias", "champion", "models:/toy-cdcgan/1", cwd=tmp_path, env=env)
    assert aliased.returncode == 0 and "models:/toy-cdcgan@champion -> version 1" in aliased.stdout, aliased.stderr
    listed = medsynth("models", cwd=tmp_path, env=env)
    assert listed.returncode == 0 and listed.stdout.splitlines()[0] == "toy-cdcgan", listed.stderr
    line = listed.stdout.splitlines()[1]
    assert line.startswith("  models:/toy-cdcgan/1 @champion  classes=square,disc,bars  resolution_px=32  "
                           "best_quality_fd=12.5  best_epoch=7  run "), line
    common = ("--label", "bars", "-n", "2", "--data-dir", str(toy_data), "--params", str(params))
    drawn = medsynth("generate", "--checkpoint", "models:/toy-cdcgan@champion", "--out", str(tmp_path / "out"),
                     *common, cwd=tmp_path, env=env)
    assert drawn.returncode == 0, drawn.stderr
    assert "generate toy/cdcgan: 2/2 kept" in drawn.stdout
    assert {r.checkpoint for r in read_manifest(tmp_path / "out" / "manifest.csv")} == {"models:/toy-cdcgan/1"}
    unknown = medsynth("generate", "--checkpoint", "models:/toy-acgan/1", "--out", str(tmp_path / "o2"), *common,
                       cwd=tmp_path, env=env)
    assert unknown.returncode == 2 and unknown.stderr.strip().splitlines() == [
        f"error: models:/toy-acgan/1: no registered model 'toy-acgan' in {uri} (registered: toy-cdcgan); list the "
        "registered generators with `medsynth models`"]
