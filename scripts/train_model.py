#!/usr/bin/env python3
"""Train the afxmatch matching network on a corpus (see scripts/make_corpus.py).

Example::

    python scripts/train_model.py --data /tmp/afx_corpus --out /tmp/afx_runs/default \
        --steps 1500 --batch-size 6 --length 65536 --time-budget 3600
"""
from __future__ import annotations

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from afxmatch.model.train import train  # noqa: E402


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, help="corpus folder holding manifest.json")
    ap.add_argument("--out", required=True, help="output folder (model.pt, config.json, ...)")
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--length", type=int, default=65536, help="samples per training example (44.1 kHz)")
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--log-every", type=int, default=10)
    ap.add_argument("--ckpt-every", type=int, default=50)
    ap.add_argument("--valid-every", type=int, default=None)
    ap.add_argument("--n-valid", type=int, default=32)
    ap.add_argument("--channels", type=int, default=1, help="1 = mono pairs, 0 = keep the files' channels")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--time-budget", type=float, default=None, help="seconds of training wall time")
    ap.add_argument("--no-resume", action="store_true")
    a = ap.parse_args(argv)

    def progress(rec):
        print(json.dumps(rec), flush=True)

    cfg = train(a.data, a.out, steps=a.steps, batch_size=a.batch_size, length=a.length, lr=a.lr,
                seed=a.seed, log_every=a.log_every, ckpt_every=a.ckpt_every, resume=not a.no_resume,
                time_budget_s=a.time_budget, progress=progress, n_valid=a.n_valid,
                valid_every=a.valid_every, channels=a.channels or None, threads=a.threads)
    print(json.dumps(cfg["validation"] | {"steps": cfg["training"]["steps"]}, default=str))


if __name__ == "__main__":
    main()
