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

SAMPLE_RATE = 44100
# EQ-fit starts of the training priors. In use the model refines the 4-start fit (the
# analysis method's own): with the shipped network that measured better than a network
# retrained on 4-start priors (README, "The learned model"), and 1-start priors keep the
# bank cheap.
PRIOR_STARTS = 1
_DS = None
_STARTS = PRIOR_STARTS


def _init(manifest: str, split: str, length: int, seed: int, channels, starts: int = PRIOR_STARTS) -> None:
    global _DS, _STARTS
    import torch

    from .pairs import PairConfig, PairDataset

    torch.set_num_threads(1)
    _STARTS = starts
    _DS = PairDataset.from_manifest(manifest, split, config=PairConfig(sample_rate=SAMPLE_RATE, length=length),
                                    seed=seed, channels=channels)


def _make(seed: int):
    from ..estimate.analysis import analysis_prior
    from ..params import ParamSpace

    pair = _DS.sample(np.random.default_rng(seed))
    prior = analysis_prior(pair["input"], SAMPLE_RATE, pair["reference"], SAMPLE_RATE, starts=_STARTS)
    return pair["input"], pair["reference"], pair["target"], ParamSpace(SAMPLE_RATE).normalise(prior)


def build(data_dir, out_dir, split: str, n: int, seed: int, length: int = 131072,
          channels=1, workers: int = 2, progress=None, prior_starts: int = PRIOR_STARTS) -> dict:
    """Make ``n`` pairs of ``split`` with priors (``prior_starts`` EQ-fit starts) into
    ``out_dir``; returns a summary. Pair ``i`` uses seed ``seed * 1_000_003 + i``
    (deterministic whatever the workers)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    manifest = str(Path(data_dir) / "manifest.json")
    t0 = time.time()
    arrays = None
    with ProcessPoolExecutor(workers, initializer=_init,
                             initargs=(manifest, split, length, seed, channels, prior_starts)) as pool:
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
               "prior_starts": prior_starts, "seconds": round(time.time() - t0, 1)}
    (out / f"{split}_bank.json").write_text(json.dumps(summary, indent=2))
    return summary


def load(out_dir, split: str, prior_starts: int | None = None) -> dict[str, np.ndarray]:
    """Memory-mapped arrays of a bank split, cut to the pair count in ``{split}_bank.json``
    (a bank whose build was stopped early holds only its first ``pairs`` entries).
    ``prior_starts``: refuse a bank whose priors were fitted from another number of EQ-fit
    starts (banks from before it was recorded used 1)."""
    out = Path(out_dir)
    meta = json.loads((out / f"{split}_bank.json").read_text())
    if prior_starts is not None and meta.get("prior_starts", 1) != prior_starts:
        raise AfxmatchError(f"the pair bank {out} holds priors fitted from {meta.get('prior_starts', 1)} EQ-fit "
                            f"start(s), not the {prior_starts} asked for: use another --bank folder, or "
                            f"delete {out} to rebuild it")
    n = meta["pairs"]
    return {k: np.load(out / f"{split}_{k}.npy", mmap_mode="r")[:n]
            for k in ("input", "reference", "target", "prior")}
