"""Scaling out with the engines users already run: torchrun DDP, an MLflow tracking server, a DVC remote, DVC's queue.

Every test here starts subprocesses (torchrun workers, ``mlflow server``, ``dvc``) that talk over 127.0.0.1 or
the file system only; nothing leaves the machine. They are marked ``slow`` like the other DVC tests and take
seconds each on 2 cores.

Run as a script (``python tests/test_scaling.py ddp-worker OUT``) this file is the torchrun worker of
:func:`test_ddp_two_processes_match_one_process`.
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # for the torchrun worker, which runs this file as a script

from tests.gan.gan_toy import case_study_config  # noqa: E402
from pipeline.gan.models import build_models  # noqa: E402
from pipeline.gan.step import GanStep  # noqa: E402

BIN = Path(sys.executable).parent
DVC = str(BIN / "dvc")
MLFLOW = str(BIN / "mlflow")
QUIET_ENV = {"DVC_NO_ANALYTICS": "1", "MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "1"}


def tool_env(**extra: str) -> dict[str, str]:
    """The environment for dvc / mlflow / torchrun subprocesses: the venv first on PATH, this repo importable."""
    env = {**os.environ, **QUIET_ENV, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
           "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "PIPELINE_TRACKING": "1"}
    env.update(extra)
    return env


def free_port() -> int:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", 0))
        except OSError as exc:
            pytest.skip(f"cannot bind a socket on 127.0.0.1 ({exc}): no loopback network here")
        return s.getsockname()[1]


# ------------------------------------------------------------------------------------------- DDP
DDP_STEPS = 2           # GanStep updates compared (the second one starts from weights the first one changed)
DDP_GLOBAL_BATCH = 16   # split 8 + 8 over the two processes
GRAD_REL = 1e-4         # gradients: max |difference| <= GRAD_REL * max |gradient| + GRAD_ATOL, per tensor
GRAD_ATOL = 1e-6
WEIGHT_ATOL = 1e-5      # weights after the Adam updates (lr 2e-4)
DDP_CASES = {"cdcgan": {"r1_gamma": 0.0, "ema_decay": 0.0},  # D conditioned on one-hot maps
             "acgan": {"r1_gamma": 0.5, "ema_decay": 0.9}}   # aux head, R1 (double backward through DDP), EMA


class FixedLatentGenerator(nn.Module):
    """G whose latent for the next call is set from outside.

    GanStep draws z from the process's RNG, and the RNG stream differs per rank (and per batch size),
    so the test hands each rank its slice of one global z instead.
    """

    def __init__(self, G: nn.Module):
        super().__init__()
        self.G, self.z_dim = G, G.z_dim
        self.next_z: torch.Tensor | None = None  # a plain attribute, not a buffer: DDP must not broadcast it

    def forward(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.G(self.next_z if self.next_z is not None else z, y)


def ddp_toy_step(model: str) -> GanStep:
    """One GanStep on 16 px, 3 classes, with every source of per-process randomness or batch coupling off."""
    cfg = case_study_config()
    t, s = cfg.train, cfg.stabilise
    t.channels_last, t.r1_gamma, t.ema_decay = "never", DDP_CASES[model]["r1_gamma"], DDP_CASES[model]["ema_decay"]
    t.cpu_bf16 = "off"  # float32 sums: bfloat16 autocast (auto on AMX CPUs) rounds beyond the fp32 tolerance below
    s.instance_noise_std, s.g_layer_noise_std, s.g_dropout = 0.0, 0.0, 0.0
    s.label_smoothing, s.label_flip_prob = "none", 0.0
    torch.manual_seed(0)  # identical initial weights in every process
    G, D = build_models(model, 3, 1, 16, base_channels=8, z_dim=16, embed_dim=8, layer_noise_std=0.0, dropout=0.0)
    for m in (*G.modules(), *D.modules()):
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.eval()  # running statistics at their init: each sample is normalised on its own; affine still trains
    return GanStep(FixedLatentGenerator(G), D, model, t, s, cfg.model(model), torch.device("cpu"))


def ddp_batches() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Real images in [-1, 1], labels and latents for every step: (steps, global batch, ...)."""
    gen = torch.Generator().manual_seed(123)
    real = torch.rand(DDP_STEPS, DDP_GLOBAL_BATCH, 1, 16, 16, generator=gen) * 2 - 1
    labels = torch.randint(0, 3, (DDP_STEPS, DDP_GLOBAL_BATCH), generator=gen)
    z = torch.randn(DDP_STEPS, DDP_GLOBAL_BATCH, 16, generator=gen)
    return real, labels, z


def run_ddp_toy(model: str, rank: int = 0, world: int = 1) -> dict:
    """DDP_STEPS updates on this rank's contiguous share of each global batch; weights, grads and stats."""
    step = ddp_toy_step(model)
    if world > 1:
        step.wrap_ddp()
    real, labels, z = ddp_batches()
    share = slice(rank * DDP_GLOBAL_BATCH // world, (rank + 1) * DDP_GLOBAL_BATCH // world)
    stats = []
    for k in range(DDP_STEPS):
        step.G_raw.next_z = z[k, share]
        s = step(real[k, share], labels[k, share], 0.0)
        if world > 1:  # every stat is a mean over the local batch: equal shares, so the mean of means
            torch.distributed.all_reduce(s)
            s /= world
        stats.append(s)

    def grads(module: nn.Module) -> dict[str, torch.Tensor]:
        return {n: p.grad.detach().clone() for n, p in module.named_parameters() if p.grad is not None}

    return {"G": step.G_raw.state_dict(), "D": step.D_raw.state_dict(), "G_grad": grads(step.G_raw),
            "D_grad": grads(step.D_raw), "G_ema": step.G_ema.state_dict() if step.G_ema is not None else {},
            "stats": torch.stack(stats)}


def ddp_worker(out_dir: str) -> None:
    """torchrun entry: gloo on CPU, every case, one result file per rank."""
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    try:
        results = {model: run_ddp_toy(model, rank, world) for model in DDP_CASES}
        torch.save(results, Path(out_dir) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def max_abs_diff(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert a.keys() == b.keys()
    return max(((a[k].float() - b[k].float()).abs().max().item() for k in a), default=0.0)


def grad_error(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    """Worst tensor's max |a - b| in units of its tolerance GRAD_REL * max |b| + GRAD_ATOL (<= 1 passes)."""
    assert a.keys() == b.keys()
    return max(((a[k] - b[k]).abs().max().item() / (GRAD_REL * b[k].abs().max().item() + GRAD_ATOL) for k in a),
               default=0.0)


@pytest.mark.slow
def test_ddp_two_processes_match_one_process(tmp_path):
    """2-process gloo DDP == 1 process on the same global batch, for CDCGAN and for ACGAN with R1 and EMA.

    What is compared: DDP_STEPS GanStep updates (D step then G step) from identical initial weights on the
    same global batch of 16, split 8 + 8 over the ranks. Compared are the weights of G and D after the
    updates, the gradients of the last update (G from the G step, D from the D step), the EMA of G and the
    step statistics (all-reduced means).

    Why those settings: a full GAN run cannot match exactly, for two reasons that are by design and not bugs.
    (1) Each rank draws its own noise (instance noise, layer noise, dropout, soft labels, flips, z): the
    stabilisation is switched off and z is handed in (FixedLatentGenerator). (2) BatchNorm in train mode
    normalises with the statistics of the local batch (8 images per rank instead of 16), so the forward pass
    itself differs; BatchNorm layers are put in eval mode here, which makes every sample's forward pass
    independent of its batch while their affine weights still train and are synchronised by DDP.
    With that, DDP's gradient average over two half batches equals the full-batch mean gradient exactly in
    real arithmetic; only the float32 summation order differs.

    Tolerances, from what float32 rounding can do: a gradient tensor must agree to GRAD_REL (1e-4) of its
    largest element plus GRAD_ATOL (1e-6, ~10 float32 ulps of the O(1) per-sample loss terms, for sums that
    cancel, e.g. the bias of D's real/fake head: -0.5 per real and +0.5 per fake sample). Measured: <= 0.05
    of that tolerance. A rank that did not average, i.e. half-batch gradients, is off by > 100 x the
    tolerance (checked below), and summing instead of averaging doubles every gradient.
    Weights must agree to WEIGHT_ATOL (1e-5 = lr / 20; measured: <= 2e-7): Adam divides by sqrt(v) + 1e-8,
    so a rounding difference on a gradient element of ~1e-8 can move that weight by a visible fraction of
    lr, but nowhere near a whole lr step. The two ranks themselves must hold bitwise identical weights.
    """
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           str(Path(__file__).resolve()), "ddp-worker", str(tmp_path)]
    proc = subprocess.run(cmd, cwd=tmp_path, env=tool_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2)]

    for model in DDP_CASES:
        one = run_ddp_toy(model)
        two, other = ranks[0][model], ranks[1][model]
        for key in ("G", "D", "G_ema"):  # DDP keeps the replicas identical
            assert max_abs_diff(two[key], other[key]) == 0.0, (model, key)
        for key in ("G_grad", "D_grad"):
            assert two[key].keys() == one[key].keys() and len(one[key]) > 0, (model, key)
            worst = grad_error(two[key], one[key])
            assert worst <= 1.0, f"{model} {key}: {worst:.2f} x the tolerance"
        for key in ("G", "D", "G_ema"):
            assert max_abs_diff(two[key], one[key]) <= WEIGHT_ATOL, (model, key)
        assert (two["stats"] - one["stats"]).abs().max().item() <= 1e-5, model

        # The comparison can fail: rank 0's half batch alone (no averaging) is far off the global batch.
        half, full = first_step_d_grads(model, DDP_GLOBAL_BATCH // 2), first_step_d_grads(model, DDP_GLOBAL_BATCH)
        assert grad_error(half, full) > 100, model


def first_step_d_grads(model: str, n: int) -> dict[str, torch.Tensor]:
    """D gradients of one update in one process on the first ``n`` images of the first global batch."""
    step = ddp_toy_step(model)
    real, labels, z = ddp_batches()
    step.G_raw.next_z = z[0, :n]
    step(real[0, :n], labels[0, :n], 0.0)
    return {name: p.grad for name, p in step.D_raw.named_parameters() if p.grad is not None}


# ------------------------------------------------------------------------------------------- MLflow server
@pytest.mark.slow
def test_mlflow_server_receives_a_pipeline_run(tmp_path, monkeypatch):
    """A local ``mlflow server`` (sqlite back end, artifact store proxied by the server) gets a tiny train_gan run.

    The pipeline only needs MLFLOW_TRACKING_URI (pipeline/tracking.py reads nothing else); artifacts go through
    the server (``mlflow-artifacts:/``), so they must land in the server's --artifacts-destination folder.
    """
    import mlflow

    from pipeline.gan.train import train_gan
    from tests.gan.gan_toy import write_cache

    port = free_port()
    uri = f"http://127.0.0.1:{port}"
    artifacts = tmp_path / "server-artifacts"
    # The job runner (huey consumers for server-side jobs) is not needed to track runs; off, it starts faster.
    env = tool_env(MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false")
    log = (tmp_path / "server.log").open("w")
    server = subprocess.Popen([MLFLOW, "server", "--backend-store-uri", f"sqlite:///{tmp_path / 'server.db'}",
                               "--artifacts-destination", str(artifacts), "--host", "127.0.0.1",
                               "--port", str(port), "--workers", "1"],
                              cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_for_http(f"{uri}/health", server, tmp_path / "server.log", timeout_s=180)
        monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
        monkeypatch.delenv("PIPELINE_TRACKING", raising=False)
        data = write_cache(tmp_path / "data" / "toy")
        cfg = case_study_config()
        t = cfg.train
        t.epochs, t.batch_size, t.tracking, t.channels_last, t.num_threads = 1, 16, True, "never", 1
        cfg.watch.samples_per_class, cfg.watch.feature_epochs, cfg.watch.feature_dim = 8, 1, 8
        cfg.cdcgan.resolution_px, cfg.cdcgan.base_channels, cfg.cdcgan.z_dim, cfg.cdcgan.embed_dim = 0, 8, 16, 8
        result = train_gan(cfg, "cdcgan", data, tmp_path / "run", "toy")

        client = mlflow.MlflowClient(uri)
        run = client.get_run(result.summary.mlflow_run_id)
        assert run.info.status == "FINISHED"
        assert run.info.artifact_uri.startswith("mlflow-artifacts:/")  # proxied by the server, not a local path
        assert run.data.tags["stage"] == "train_gan" and run.data.tags["dataset"] == "toy"
        assert run.data.params["gan.cdcgan.base_channels"] == "8" and run.data.params["gan.train.epochs"] == "1"
        assert {"loss_D", "loss_G", "quality_fd"} <= run.data.metrics.keys()
        assert [a.path for a in client.list_artifacts(run.info.run_id, "samples")] == ["samples/epoch_0001.png"]
        assert list(artifacts.rglob("epoch_0001.png")), "the sample grid did not reach the server's artifact store"
        assert run.data.tags["generator_logged_as"] == "mlflow_model"  # the generator, through the server too
    finally:
        stop_process_group(server)
        log.close()


def wait_for_http(url: str, proc: subprocess.Popen, log: Path, timeout_s: float) -> None:
    """Poll ``url`` until it answers 200; fail with the server log when the process dies or time runs out."""
    import urllib.request

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"server exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    pytest.fail(f"no answer from {url} after {timeout_s} s:\n{log.read_text()[-3000:]}")


def stop_process_group(proc: subprocess.Popen) -> None:
    """SIGTERM the process group this test started (server and its workers), SIGKILL after 15 s."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=15)
    try:  # workers that outlived the main process
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


# ------------------------------------------------------------------------------------------- DVC
def git_dvc_repo(path: Path) -> Path:
    """An empty git repo with DVC initialised, analytics off, one commit."""
    path.mkdir(parents=True)
    for cmd in (["git", "init", "-q"], ["git", "config", "user.email", "test@example.com"],
                ["git", "config", "user.name", "test"], [DVC, "init", "-q"],
                [DVC, "config", "core.analytics", "false"], [DVC, "config", "core.check_update", "false"]):
        sh(cmd, path)
    return path


def sh(cmd: list[str], cwd: Path, env: dict[str, str] | None = None, timeout: float = 300) -> str:
    proc = subprocess.run(cmd, cwd=cwd, env=env or tool_env(), capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{' '.join(cmd)} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
    return proc.stdout


def git_commit_all(repo: Path, message: str) -> None:
    sh(["git", "add", "-A"], repo)
    sh(["git", "commit", "-qm", message], repo)


@pytest.mark.slow
def test_dvc_local_remote_push_pull_round_trip(tmp_path):
    """``dvc push`` to a directory remote, lose the cache and the files, ``dvc pull``: the same bytes come back.

    Two kinds of output, as in the pipeline: a file added with ``dvc add`` (data) and a stage output (model).
    """
    repo = git_dvc_repo(tmp_path / "repo")
    remote = tmp_path / "remote"
    sh([DVC, "remote", "add", "-d", "storage", str(remote)], repo)
    data = np.random.default_rng(0).integers(0, 256, 50_000, dtype=np.uint8).tobytes()
    (repo / "data.bin").write_bytes(data)
    sh([DVC, "add", "-q", "data.bin"], repo)
    (repo / "dvc.yaml").write_text("stages:\n  train:\n    cmd: python -c \"import pathlib; "
                                   "pathlib.Path('models').mkdir(); "
                                   "pathlib.Path('models/model.bin').write_bytes(bytes(range(256)) * 40)\"\n"
                                   "    outs:\n      - models\n")
    sh([DVC, "repro", "-q"], repo)
    git_commit_all(repo, "data and model")
    sh([DVC, "push", "-q"], repo)
    assert any(p.is_file() for p in remote.rglob("*")), "dvc push wrote nothing to the remote"

    shutil.rmtree(repo / ".dvc" / "cache")
    (repo / "data.bin").unlink()
    shutil.rmtree(repo / "models")
    sh([DVC, "pull", "-q"], repo)
    assert (repo / "data.bin").read_bytes() == data
    assert (repo / "models" / "model.bin").read_bytes() == bytes(range(256)) * 40
    assert "up to date" in sh([DVC, "status"], repo).lower()


QUEUE_STAGE = """\
import json, os, time
from pathlib import Path

import yaml

from pipeline.tracking import start_run

value = yaml.safe_load(Path("params.yaml").read_text())["run"]["value"]
meet = Path(os.environ["RENDEZVOUS_DIR"])
(meet / f"started_{value}").touch()
deadline = time.monotonic() + 60  # both experiments reach this point together only when they run in parallel
while len(list(meet.glob("started_*"))) < 2 and time.monotonic() < deadline:
    time.sleep(0.2)
saw_other = len(list(meet.glob("started_*"))) >= 2
with start_run("queue_test", "toy", params={"value": value}, tags={"saw_other": saw_other}) as tracker:
    tracker.log_metrics({"value": float(value)})
Path("result.json").write_text(json.dumps({"value": value, "saw_other": saw_other}))
"""


@pytest.mark.slow
def test_dvc_queue_runs_two_experiments_in_parallel_into_one_mlflow_store(tmp_path):
    """``dvc exp run --queue`` twice (other ``-S`` params), ``dvc queue start -j 2``: both MLflow runs arrive.

    The stage waits until the other experiment has started too (a rendezvous in a shared folder), so both
    open their MLflow run against one sqlite file at the same moment: pipeline.tracking's retry on
    "database is locked" has to carry them. The store is created before the queue starts, as a shared store
    is: two processes that both create a fresh sqlite store at once fail with "table ... already exists"
    (MLflow's schema migration is not safe to run concurrently; see docs/SCALING.md).
    """
    import mlflow

    repo = git_dvc_repo(tmp_path / "repo")
    (repo / "params.yaml").write_text("run:\n  value: 0\n")
    (repo / "stage.py").write_text(QUEUE_STAGE)
    (repo / "dvc.yaml").write_text("stages:\n  run:\n    cmd: python stage.py\n    deps: [stage.py]\n"
                                   "    params: [run]\n    metrics:\n      - result.json: {cache: false}\n")
    git_commit_all(repo, "stage")
    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    mlflow.MlflowClient(store).search_experiments()  # creates the store's tables
    meet = tmp_path / "rendezvous"
    meet.mkdir()
    env = tool_env(MLFLOW_TRACKING_URI=store, RENDEZVOUS_DIR=str(meet))

    for value in (1, 2):
        sh([DVC, "exp", "run", "--queue", "-S", f"run.value={value}"], repo, env)
    # The queue's worker daemons inherit the caller's stdout/stderr, so a captured `dvc queue start` would block
    # until both experiments end; its output goes to a file instead and the test polls `dvc queue status`.
    log = tmp_path / "queue_start.log"
    try:
        with log.open("w") as out:
            subprocess.run([DVC, "queue", "start", "-j", "2"], cwd=repo, env=env, stdout=out, stderr=subprocess.STDOUT,
                           stdin=subprocess.DEVNULL, timeout=120, check=True)
        deadline = time.monotonic() + 600  # a loaded CI machine: ~30 s when the CPU is free
        while True:
            status = sh([DVC, "queue", "status"], repo, env)
            if not any(word in status for word in ("Queued", "Running")) or time.monotonic() > deadline:
                break
            time.sleep(2)
    finally:
        subprocess.run([DVC, "queue", "stop"], cwd=repo, env=env, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL, timeout=60)
    tasks = [line.split() for line in status.splitlines() if line.strip() and not line.startswith(("Task", "Worker"))]
    if not (len(tasks) == 2 and all("Success" in t for t in tasks)):
        logs = [subprocess.run([DVC, "queue", "logs", t[0]], cwd=repo, env=env, capture_output=True, text=True,
                               timeout=60).stdout[-1500:] for t in tasks if t]
        pytest.fail(f"queue did not finish both experiments:\n{status}\n{log.read_text()[-1000:]}\n" + "\n".join(logs))

    client = mlflow.MlflowClient(store)
    experiment = client.get_experiment_by_name("medsynth-toy")
    runs = client.search_runs([experiment.experiment_id])
    assert sorted(r.data.params["value"] for r in runs) == ["1", "2"]
    assert all(r.info.status == "FINISHED" for r in runs)
    assert all(r.data.tags["saw_other"] == "True" for r in runs), "the two experiments did not run in parallel"


if __name__ == "__main__" and len(sys.argv) == 3 and sys.argv[1] == "ddp-worker":
    ddp_worker(sys.argv[2])
