"""Run a study preset on every core and time it: the independent GAN and generate stages side by side.

    python scripts/study.py presets/herlev.yaml --timing reports/study/herlev_time.json

`dvc repro` runs one stage at a time, and a GAN on a CPU uses one core far better than two threads do
(measured: two 1-thread GANs beat one 2-thread GAN), so on a 2-core machine a preset's two GANs take as long
side by side as one of them alone. This script is the same pipeline, reordered:

1. write params.yaml from the preset overlay (when one is given; as `medsynth preset` does) and `dvc repro` every ingest stage;
2. run the `train_gan@<dataset>-<gan>` stages as parallel processes, each pinned to its own share of the cores
   (the stages size their torch threads to their CPU affinity), then `dvc commit -f` each, exactly as if
   `dvc repro` had run it (same commands, same params, same outputs);
3. the same for the `generate@...` stages;
4. `dvc repro` for the rest (evaluate runs its arm x seed fits in one process per core; then the report).

Each phase's wall time goes to stdout and, with --timing, to a JSON file. Logs of the parallel stages go to
--log-dir. Stages that DVC already reports as up to date are skipped, so a rerun after an interruption
resumes (the GAN stages also resume from their checkpoints under gan.work_dir).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository this script lies in
from pipeline.config import preset_path, render_preset  # noqa: E402
from pipeline.runtime import cpu_set  # noqa: E402

DVC = str(Path(sys.executable).with_name("dvc")) if Path(sys.executable).with_name("dvc").exists() else "dvc"
PARALLEL = {"train_gan": "python -m stages.train_gan --dataset {dataset} --model {gan}",
            "generate": "python -m stages.generate --dataset {dataset} --gan {gan}"}


def core_shares(cores: list[int], n_jobs: int) -> list[list[int]]:
    """Disjoint, near-equal core sets for up to len(cores) jobs at once (one core each when jobs >= cores)."""
    slots = max(1, min(n_jobs, len(cores)))
    return [cores[i::slots] for i in range(slots)]


def stage_jobs(stage_names: list[str], kind: str) -> list[tuple[str, list[str]]]:
    """(stage name, argv) of every `<kind>@<dataset>-<gan>` stage; the dataset may itself contain '-'."""
    jobs = []
    for name in stage_names:
        if name.startswith(f"{kind}@"):
            dataset, gan = name.split("@", 1)[1].rsplit("-", 1)
            cmd = PARALLEL[kind].format(dataset=dataset, gan=gan).split()
            jobs.append((name, [sys.executable, *cmd[1:]]))
    return jobs


def run_parallel(jobs: list[tuple[str, list[str]]], cores: list[int], log_dir: Path, cwd: Path) -> dict[str, float]:
    """Run the jobs, at most one per core share at a time, each pinned to its share; stop at the first failure."""
    log_dir.mkdir(parents=True, exist_ok=True)
    free = core_shares(cores, len(jobs))
    pending, running, seconds = list(jobs), {}, {}
    while pending or running:
        while pending and free:
            (name, argv), share = pending.pop(0), free.pop(0)
            log = (log_dir / f"{name.replace('@', '_')}.log").open("w")
            pin = (lambda s=share: os.sched_setaffinity(0, s)) if hasattr(os, "sched_setaffinity") else None
            proc = subprocess.Popen(argv, cwd=cwd, stdout=log, stderr=subprocess.STDOUT, preexec_fn=pin)
            running[name] = (proc, share, log, time.monotonic())
            print(f"  started {name} on core(s) {share} (log: {log.name})", flush=True)
        time.sleep(2)
        for name, (proc, share, log, t0) in list(running.items()):
            if proc.poll() is None:
                continue
            log.close()
            del running[name]
            free.append(share)
            seconds[name] = round(time.monotonic() - t0, 1)
            if proc.returncode != 0:
                for other, *_ in running.values():
                    other.terminate()
                raise SystemExit(f"{name} failed (exit {proc.returncode}); see {log_dir / Path(log.name).name}, "
                                 "fix it and run this script again (finished stages are kept)")
            print(f"  {name} done in {seconds[name] / 60:.1f} min", flush=True)
    return seconds


def dvc(args: list[str], cwd: Path, capture: bool = False) -> str:
    proc = subprocess.run([DVC, *args], cwd=cwd, text=True, capture_output=capture)
    if proc.returncode != 0:
        raise SystemExit(f"dvc {' '.join(args)} failed (exit {proc.returncode}) in {cwd}; "
                         f"{(proc.stderr or '').strip().splitlines()[-1:] or 'see its output above'}")
    return proc.stdout or ""


def stale(names: list[str], cwd: Path) -> list[str]:
    """The stages among `names` that DVC would run (changed deps, params or outputs, or never run)."""
    out = dvc(["status", "--json", *names], cwd, capture=True)
    return [n for n in names if n in json.loads(out or "{}")]


def phase(name: str, timing: dict, fn) -> None:
    t0 = time.monotonic()
    print(f"[{name}]", flush=True)
    detail = fn()
    timing["phases"][name] = {"seconds": round(time.monotonic() - t0, 1), **({"stages": detail} if detail else {})}
    print(f"[{name}] {timing['phases'][name]['seconds'] / 60:.1f} min", flush=True)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("preset", nargs="?", help="preset overlay to write params.yaml from first (e.g. presets/herlev.yaml or herlev)")
    ap.add_argument("--repo", type=Path, default=Path.cwd(), help="checkout to run in (default: here)")
    ap.add_argument("--timing", type=Path, help="write the phase times to this JSON file")
    ap.add_argument("--log-dir", type=Path, default=Path("runs/study_logs"), help="logs of the parallel stages")
    args = ap.parse_args(argv)
    repo = args.repo.resolve()
    if args.preset:
        (repo / "params.yaml").write_text(render_preset(preset_path(args.preset, repo / "presets")))
    cores = cpu_set()
    timing = {"preset": args.preset or "params.yaml", "cores": len(cores), "phases": {}}
    t0 = time.monotonic()
    names = dvc(["stage", "list", "--name-only"], repo, capture=True).split()
    log_dir = args.log_dir if args.log_dir.is_absolute() else repo / args.log_dir

    phase("ingest", timing, lambda: dvc(["repro", *[n for n in names if n.startswith("ingest@")]], repo) and None)
    for kind in ("train_gan", "generate"):
        def parallel(kind=kind):
            jobs = stage_jobs(names, kind)
            todo = stale([name for name, _ in jobs], repo)
            seconds = run_parallel([job for job in jobs if job[0] in todo], cores, log_dir, repo)
            if todo:
                dvc(["commit", "-f", *todo], repo)
            return seconds
        phase(kind, timing, parallel)
    phase("evaluate_and_report", timing, lambda: dvc(["repro"], repo) and None)
    timing["total_seconds"] = round(time.monotonic() - t0, 1)
    print(f"total {timing['total_seconds'] / 60:.1f} min on {len(cores)} core(s)", flush=True)
    if args.timing:
        args.timing.parent.mkdir(parents=True, exist_ok=True)
        args.timing.write_text(json.dumps(timing, indent=2) + "\n")


if __name__ == "__main__":
    main()
