"""Progress bars: drawn for a person at a terminal, off when stderr is not a terminal, under CI, or when
PIPELINE_PROGRESS=0; the GAN loop counts epochs, or training minutes when gan.train.max_minutes is set."""
from __future__ import annotations

import io

import pytest

from pipeline.config import load_params
from pipeline.gan.train import train_gan
from pipeline.progress import progress, show_progress
from tests.gan.gan_toy import tiny_gan_section, write_cache, write_params


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture(autouse=True)
def _no_settings(monkeypatch):
    monkeypatch.delenv("PIPELINE_PROGRESS", raising=False)
    monkeypatch.delenv("CI", raising=False)


def test_show_progress_rules(monkeypatch):
    assert show_progress(Terminal()) and not show_progress(io.StringIO())  # a pipe or a log file: no bars
    monkeypatch.setenv("CI", "true")
    assert not show_progress(Terminal())
    monkeypatch.setenv("PIPELINE_PROGRESS", "1")  # forced on, even in CI
    assert show_progress(io.StringIO())
    monkeypatch.setenv("PIPELINE_PROGRESS", "0")
    monkeypatch.delenv("CI")
    assert not show_progress(Terminal())
    monkeypatch.delenv("PIPELINE_PROGRESS")
    monkeypatch.setenv("CI", "false")
    assert show_progress(Terminal())


def test_bar_is_drawn_on_a_terminal_only():
    shown, hidden = Terminal(), io.StringIO()
    for stream in (shown, hidden):
        for _ in progress(range(3), desc="decode", unit="img", file=stream):
            pass
    assert "decode: 100%" in shown.getvalue() and "3/3" in shown.getvalue()
    assert hidden.getvalue() == ""


@pytest.mark.parametrize("timed", [False, True])
def test_gan_loop_bar_counts_epochs_or_minutes(tmp_path, monkeypatch, capsys, timed):
    monkeypatch.setenv("PIPELINE_PROGRESS", "1")
    monkeypatch.setenv("PIPELINE_TRACKING", "0")
    data = write_cache(tmp_path / "data" / "toy")
    section = tiny_gan_section(epochs=2, max_minutes=1e-6 if timed else 0)
    cfg = load_params(write_params(tmp_path / "params.yaml", section)).gan
    train_gan(cfg, "cdcgan", data, tmp_path / "run", "toy")
    err = capsys.readouterr().err
    if timed:  # stopped by the clock after epoch 1: the bar is in minutes and names the epoch
        assert "toy/cdcgan: 100%" in err and " min [" in err and "epoch=1/2" in err
    else:
        assert "toy/cdcgan: 100%" in err and "2/2 [" in err and "loss_D=" in err and "fd=" in err
