"""A fixed bank of synthetic style pairs, each with the analysis method's estimate (the
prior the residual network refines). Built once in parallel processes, stored as .npy.

Layout of ``DIR``: ``{split}_input.npy``, ``{split}_reference.npy``, ``{split}_target.npy``
(float32, ``(n, channels, length)``) and ``{split}_prior.npy`` (``(n, 25)`` normalised).
"""

from __future__ import annotations

import json
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from ..errors import AfxmatchError
from ..estimate.analysis import FIT_STARTS

SAMPLE_RATE = 44100
_DS = None


def _init(manifest: str, split: str, length: int, seed: int, channels) -> None:
    global _DS
    import torch

    from .pairs import PairConfig, PairDataset

    torch.set_num_threads(1)
    _DS = PairDataset.from_manifest(manifest, split, config=PairConfig(sample_rate=SAMPLE_RATE, length=length),
                                    seed=seed, channels=channels)


def _make(seed: int):
    from ..estimate.analysis import analysis_prior
    from ..params import ParamSpace

    pair = _DS.sample(np.random.default_rng(seed))
    prior = analysis_prior(pair["input"], SAMPLE_RATE, pair["reference"], SAMPLE_RATE)
    return pair["input"], pair["reference"], pair["target"], ParamSpace(SAMPLE_RATE).normalise(prior)


def build(data_dir, out_dir, split: str, n: int, seed: int, length: int = 131072,
          channels=1, workers: int = 2, progress=None) -> dict:
    """Make ``n`` pairs of ``split`` with priors into ``out_dir``; returns a summary.
    Pair ``i`` uses seed ``seed * 1_000_003 + i`` (deterministic whatever the workers)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    manifest = str(Path(data_dir) / "manifest.json")
    t0 = time.time()
    arrays = None
    with ProcessPoolExecutor(workers, initializer=_init,
                             initargs=(manifest, split, length, seed, channels)) as pool:
        for i, (x, r, t, u) in enumerate(pool.map(_make, [seed * 1_000_003 + i for i in range(n)],
                                                  chunksize=4)):
            if arrays is None:
                arrays = {k: np.lib.format.open_memmap(out / f"{split}_{k}.npy", "w+", np.float32, (n, *shape))
                          for k, shape in (("input", x.shape), ("reference", r.shape),
                                           ("target", t.shape), ("prior", u.shape))}
            for k, v in (("input", x), ("reference", r), ("target", t), ("prior", u)):
                arrays[k][i] = v
            if progress and (i + 1) % 50 == 0:
                progress({"event": "bank", "split": split, "done": i + 1, "of": n,
                          "elapsed": round(time.time() - t0, 1)})
    for a in arrays.values():
        a.flush()
    summary = {"split": split, "pairs": n, "seed": seed, "length": length, "channels": channels,
               "prior_starts": FIT_STARTS, "seconds": round(time.time() - t0, 1)}
    (out / f"{split}_bank.json").write_text(json.dumps(summary, indent=2))
    return summary


def load(out_dir, split: str) -> dict[str, np.ndarray]:
    """Memory-mapped arrays of a bank split, cut to the pair count in ``{split}_bank.json``
    (a bank whose build was stopped early holds only its first ``pairs`` entries).
    Refuses a bank whose priors were fitted with another number of EQ-fit starts than
    the model is given in use (banks from before ``prior_starts`` was recorded used 1)."""
    out = Path(out_dir)
    meta = json.loads((out / f"{split}_bank.json").read_text())
    if meta.get("prior_starts", 1) != FIT_STARTS:
        raise AfxmatchError(f"the pair bank {out} holds priors fitted from {meta.get('prior_starts', 1)} EQ-fit "
                         f"start(s), but the model is given {FIT_STARTS} in use: rebuild the bank "
                         f"(delete {out} and train again)")
    n = meta["pairs"]
    return {k: np.load(out / f"{split}_{k}.npy", mmap_mode="r")[:n]
            for k in ("input", "reference", "target", "prior")}
