"""Stage commands for the reliability tests without paying for the imports on every call.

``python -m stages.<name> ...`` spends 3-15 s on this 2-core machine importing torch, scikit-learn, MONAI
and MLflow before it reads its first argument, so forty bad-input cases would take minutes. A
:class:`StageRunner` starts ONE server process (this file run as a script) that imports those libraries
once; for every command the server forks a child that becomes the command: its own working directory,
environment, stdin (/dev/null), stdout and stderr files, ``sys.argv``, and the stage module run as
``__main__`` by :func:`runpy.run_module`, as ``python -m`` does. The child ends the way the interpreter
ends a script: ``sys.exit(n)`` gives exit code n, an uncaught exception prints its traceback and gives 1,
atexit handlers run (only the slow teardown of the imported modules is skipped). Every command is a
separate process (its own session, so ``os.killpg`` reaches anything it starts) that a test may SIGKILL.
One difference remains: a module the server imported is already in ``sys.modules`` (``PRELOAD``); the
stages import what they use themselves, so this only saves time. ``test_bad_inputs.py`` checks that one
command gives the same answer here and through a real ``python -m``.

Protocol (one JSON object per line): ``{"op": "start", "module", "args", "cwd", "env", "stdout",
"stderr", "fsize_limit"}`` -> ``{"pid"}``; ``{"op": "wait", "pid", "timeout"}`` -> ``{"returncode"}``
(negative: killed by that signal, as in :mod:`subprocess`).
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SALT = "reliability-test-salt"  # PIPELINE_ID_SALT of every command
PRELOAD = ("stages.ingest", "stages.train_gan", "stages.generate", "stages.evaluate", "stages.report",
           "stages.phantoms", "pipeline.generate.run", "pipeline.quality.metrics", "monai", "mlflow",
           "mlflow.store.tracking.sqlalchemy_store")  # not mlflow.pytorch: it configures the root logger


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str
    seconds: float

    @property
    def stderr_lines(self) -> list[str]:
        return [line for line in self.stderr.splitlines() if line.strip()]


class StageRunner:
    """Client of the server: ``run`` a stage command to the end, or ``start`` it and ``wait`` later."""

    def __init__(self, base_env: dict[str, str] | None = None):
        self.base_env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONPATH": str(REPO),
                         "MLFLOW_DISABLE_TELEMETRY": "true", "PIPELINE_ID_SALT": SALT,
                         "HOME": os.environ.get("HOME", "/tmp"), **(base_env or {})}
        self._logs = Path(tempfile.mkdtemp(prefix="stagerun-"))
        self._n = 0
        self._server = subprocess.Popen([sys.executable, __file__], cwd=REPO, stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, text=True, bufsize=1,
                                        env={**os.environ, "PYTHONPATH": str(REPO)})
        ready = self._server.stdout.readline()
        if not ready:
            raise RuntimeError(f"stage server failed to start (exit {self._server.wait()})")

    def _ask(self, request: dict) -> dict:
        self._server.stdin.write(json.dumps(request) + "\n")
        self._server.stdin.flush()
        answer = self._server.stdout.readline()
        if not answer:
            raise RuntimeError("stage server died")
        return json.loads(answer)

    def start(self, module: str, *args: str, cwd: Path | str, env: dict[str, str] | None = None,
              fsize_limit: int | None = None) -> tuple[int, Path, Path]:
        """Fork ``python -m module args``; returns (pid, stdout file, stderr file)."""
        self._n += 1
        out, err = self._logs / f"{self._n}.out", self._logs / f"{self._n}.err"
        pid = self._ask({"op": "start", "module": module, "args": [str(a) for a in args], "cwd": str(cwd),
                         "env": {**self.base_env, **(env or {})}, "stdout": str(out), "stderr": str(err),
                         "fsize_limit": fsize_limit})["pid"]
        return pid, out, err

    def wait(self, pid: int, timeout: float = 300) -> int:
        return self._ask({"op": "wait", "pid": pid, "timeout": timeout})["returncode"]

    def run(self, module: str, *args: str, cwd: Path | str, env: dict[str, str] | None = None,
            fsize_limit: int | None = None, timeout: float = 300) -> Result:
        t0 = time.perf_counter()
        pid, out, err = self.start(module, *args, cwd=cwd, env=env, fsize_limit=fsize_limit)
        code = self.wait(pid, timeout)
        return Result(code, out.read_text(errors="replace"), err.read_text(errors="replace"),
                      time.perf_counter() - t0)

    def close(self) -> None:
        self._server.stdin.close()
        self._server.wait(timeout=60)
        shutil.rmtree(self._logs, ignore_errors=True)


# ------------------------------------------------------------------------------------------- the server
def _become(request: dict) -> None:
    """In the forked child: turn into ``python -m <module> <args>``; never returns."""
    os.setsid()
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    if request.get("fsize_limit"):
        import resource

        resource.setrlimit(resource.RLIMIT_FSIZE, (request["fsize_limit"], request["fsize_limit"]))
    for fd, path, mode in ((0, os.devnull, os.O_RDONLY), (1, request["stdout"], os.O_WRONLY | os.O_CREAT),
                           (2, request["stderr"], os.O_WRONLY | os.O_CREAT)):
        target = os.open(path, mode, 0o644)
        os.dup2(target, fd)
        os.close(target)
    sys.argv = [request["module"], *request["args"]]
    sys.path.insert(0, request["cwd"])  # python -m puts the working directory first
    sys.modules.pop(request["module"], None)  # python -m runs it fresh as __main__
    code = 0
    try:
        import runpy

        runpy.run_module(request["module"], run_name="__main__", alter_sys=True)
    except SystemExit as exc:  # what the interpreter does with it
        if exc.code is None or isinstance(exc.code, int):
            code = exc.code or 0
        else:
            print(exc.code, file=sys.stderr)
            code = 1
    except BaseException:
        sys.excepthook(*sys.exc_info())
        code = 1
    import atexit

    atexit._run_exitfuncs()  # as at interpreter exit (MLflow ends its active run there), then skip the slow
    for stream in (sys.stdout, sys.stderr):  # teardown of torch, MONAI and MLflow modules
        stream.flush()
    os._exit(code)


def _wait(pid: int, timeout: float) -> int:
    deadline = time.monotonic() + timeout
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        if time.monotonic() > deadline:
            os.killpg(pid, signal.SIGKILL)
            return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
        time.sleep(0.01)


def serve() -> None:
    import importlib

    import logging

    for name in PRELOAD:
        importlib.import_module(name)
    assert not logging.getLogger().handlers, "a preloaded module configured logging; the stages could not"
    children: set[int] = set()
    print("ready", flush=True)
    for line in sys.stdin:
        request = json.loads(line)
        if request["op"] == "start":
            pid = os.fork()
            if pid == 0:
                _become(request)
            children.add(pid)
            answer = {"pid": pid}
        else:
            children.discard(request["pid"])
            answer = {"returncode": _wait(request["pid"], request["timeout"])}
        print(json.dumps(answer), flush=True)
    for pid in children:  # the client went away: leave nothing running
        try:
            os.killpg(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass


if __name__ == "__main__":
    sys.path[0] = str(REPO)  # not this script's folder
    serve()
