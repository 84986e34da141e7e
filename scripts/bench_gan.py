"""Benchmark the GAN training loop against a naive reference loop, and its FLOP/s against a conv benchmark.

    python scripts/bench_gan.py                      # CDCGAN, 64 px, width 64, batch 64, fp32
    python scripts/bench_gan.py --bf16 off --model acgan  # force fp32 (default auto: gan.train.cpu_bf16)

The command line of the ``gan`` section of ``scripts/bench.py`` (``make bench``), which holds the code
(:func:`bench.gan_throughput`): in one run, with the same model, batch and stabilisation,
- this loop: ``pipeline.gan.train.train_gan`` on an ingest cache (uint8 tensor in memory, one host sync per
  epoch, one fake batch per step), images/s over the epochs after the first (warm-up);
- the naive loop: PNG files decoded every step, ``.item()`` on every loss every step, fakes generated
  again for the G step;
- FLOPs of one step counted with ``torch.utils.flop_counter.FlopCounterMode`` -> achieved FLOP/s, against
  the FLOP/s of a plain conv layer (forward + backward) timed on the same machine.
Not a test: it prints a table (and ``--json FILE`` writes the numbers).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from bench import GanBench, available_cores, gan_throughput, pick_device  # scripts/ is on sys.path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="cdcgan", choices=["cdcgan", "acgan"])
    ap.add_argument("--resolution", type=int, default=64)
    ap.add_argument("--base-channels", type=int, default=64)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--channels", type=int, default=1, choices=[1, 3])
    ap.add_argument("--images", type=int, default=256, help="images in the toy data set (one epoch)")
    ap.add_argument("--epochs", type=int, default=3, help="epochs of this loop (the first is warm-up)")
    ap.add_argument("--naive-steps", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=1, help="measure both loops alternately this many times")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0 = all cores)")
    ap.add_argument("--bf16", default="auto", choices=["auto", "on", "off"],
                    help="bfloat16 autocast (CPU: gan.train.cpu_bf16, auto = where the CPU has it; CUDA: amp)")
    ap.add_argument("--channels-last", default="auto", choices=["auto", "always", "never"],
                    help="NHWC memory format (gan.train.channels_last; auto = CUDA only)")
    ap.add_argument("--json", help="write the numbers here")
    args = ap.parse_args(argv)

    torch.set_num_threads(args.threads or available_cores())
    b = GanBench(model=args.model, resolution_px=args.resolution, base_channels=args.base_channels, batch=args.batch,
                 channels=args.channels, images=args.images, epochs=args.epochs, naive_steps=args.naive_steps,
                 rounds=args.rounds, threads=args.threads, bf16=args.bf16, channels_last=args.channels_last)
    out = gan_throughput(b, pick_device("auto"))
    width = max(len(k) for k in out)
    for k, v in out.items():
        print(f"{k:<{width}}  {v:.3f}" if isinstance(v, float) else f"{k:<{width}}  {v}")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
