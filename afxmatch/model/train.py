"""Training of the matching network through the differentiable chain.

Loss: multi-resolution STFT between ``dsp.process(input, 44100, denormalise(net(input, ref)))``
and the target (the input's audio with the reference's style), with the output gain kept
in the chain (inputs and targets are peak-normalised independently, so the gain matters).

Pairs come from :mod:`afxmatch.model.pairs` in a background thread. Checkpoints hold only
plain tensors / numbers / strings / dicts so that ``torch.load(weights_only=True)`` works.
"""

from __future__ import annotations

import json
import math
import os
import queue
import threading
import time
from pathlib import Path
from typing import Callable, Iterable, Iterator, Optional

import numpy as np
import torch

from .. import dsp
from ..params import ParamSpace, fingerprint
from .io import save_model
from .losses import MRSTFTLoss
from .network import MatchNet, count_parameters

SAMPLE_RATE = 44100
CKPT = "checkpoint.pt"


def _stack(pairs: list[dict]) -> dict[str, torch.Tensor]:
    c = max(p["input"].shape[0] for p in pairs)
    out = {}
    for key in ("input", "reference", "target"):
        arrs = [p[key] if p[key].shape[0] == c else np.repeat(p[key][:1], c, axis=0) for p in pairs]
        out[key] = torch.from_numpy(np.stack(arrs).astype(np.float32))
    if all("prior" in p for p in pairs):
        out["prior"] = torch.from_numpy(np.stack([p["prior"] for p in pairs]).astype(np.float32))
    return out


def bank_pairs(bank_dir, split: str, seed: int, prior_starts: int | None = None) -> Iterator[dict]:
    """Endless random draws (with replacement) from a pair bank (see :mod:`.bank`)."""
    from .bank import load

    arrays = load(bank_dir, split, prior_starts)
    n = arrays["prior"].shape[0]
    rng = np.random.default_rng(seed)
    while True:
        i = int(rng.integers(n))
        yield {k: np.array(v[i]) for k, v in arrays.items()}


def match_rms(y: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """Scale ``y`` ``(batch, ch, n)`` to the RMS of ``ref``: the differentiable stand-in for
    the pipeline's loudness match of the output to the reference."""
    rms = lambda v: torch.sqrt(torch.mean(v.double() ** 2, dim=(1, 2), keepdim=True) + 1e-12)  # noqa: E731
    return y * (rms(ref) / rms(y)).to(y.dtype)


class _Prefetcher:
    """Builds batches from a pair iterator in a daemon thread."""

    def __init__(self, pairs: Iterator[dict], batch_size: int, depth: int = 3):
        self.q: queue.Queue = queue.Queue(maxsize=depth)
        self.err = None
        self.stop = False

        def work():
            try:
                while not self.stop:
                    self.q.put(_stack([next(pairs) for _ in range(batch_size)]))
            except BaseException as e:  # noqa: BLE001 - handed to the consumer
                self.err = e
                self.q.put(None)

        self.thread = threading.Thread(target=work, daemon=True)
        self.thread.start()

    def next(self) -> dict[str, torch.Tensor]:
        item = self.q.get()
        if item is None:
            raise RuntimeError(f"pair generation failed: {self.err!r}") from self.err
        return item

    def close(self):
        self.stop = True
        try:
            while True:
                self.q.get_nowait()
        except queue.Empty:
            pass


def chain_loss(model: MatchNet, batch: dict[str, torch.Tensor], loss_fn: MRSTFTLoss,
               space: ParamSpace, reduce: bool = True):
    x, ref, tgt = batch["input"], batch["reference"], batch["target"]
    u = model(x.mean(1), ref.mean(1), batch.get("prior"))
    if model.residual:  # the output gain is the pipeline's loudness match, not the network's
        y = match_rms(dsp.process(x, SAMPLE_RATE, dsp.denormalise(space, u.double()), ("eq", "comp")), ref)
    else:
        y = dsp.process(x, SAMPLE_RATE, dsp.denormalise(space, u.double()))
    return loss_fn(y, tgt, reduce=reduce), u


@torch.no_grad()
def evaluate(model: MatchNet, valid: list[dict[str, torch.Tensor]], loss_fn, space) -> float:
    model.eval()
    losses = [chain_loss(model, b, loss_fn, space, reduce=False)[0] for b in valid]
    model.train()
    return float(torch.cat(losses).mean())


@torch.no_grad()
def baseline_loss(valid: list[dict[str, torch.Tensor]], loss_fn) -> float:
    return float(torch.cat([loss_fn(b["input"], b["target"], reduce=False) for b in valid]).mean())


def _lr(step: int, steps: int, lr: float, warmup: int) -> float:
    if step < warmup:
        return lr * (step + 1) / warmup
    t = min(1.0, (step - warmup) / max(1, steps - warmup))
    return lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * t)))


def _corpus_sources(data_dir, length: int, seed: int, n_valid: int, channels):
    from .pairs import PairConfig, PairDataset

    manifest = Path(data_dir) / "manifest.json"
    if not manifest.is_file():
        raise FileNotFoundError(f"{manifest} not found (build the corpus with scripts/make_corpus.py)")
    cfg = PairConfig(sample_rate=SAMPLE_RATE, length=length)
    train_ds = PairDataset.from_manifest(str(manifest), "train", config=cfg, seed=seed, channels=channels)
    valid_ds = PairDataset.from_manifest(str(manifest), "valid", config=cfg, seed=seed + 1, channels=channels)
    rng = np.random.default_rng(10_000 + seed)
    valid_pairs = [valid_ds.sample(rng) for _ in range(n_valid)]
    summary = dict(manifest=str(manifest), train_files=len(train_ds), valid_files=len(valid_ds),
                   train_dropped=len(train_ds.dropped), valid_pairs=n_valid,
                   pair_config={k: v for k, v in cfg.__dict__.items()})
    return train_ds, valid_pairs, summary


def train(data_dir, out_dir, steps: int = 2000, batch_size: int = 8, length: int = 65536,
          lr: float = 1e-3, device: str = "cpu", seed: int = 0, log_every: int = 10,
          ckpt_every: int = 100, resume: bool = True, time_budget_s: Optional[float] = None,
          progress: Optional[Callable[[dict], None]] = None, arch: Optional[dict] = None,
          n_valid: int = 32, valid_every: Optional[int] = None, channels: Optional[int] = 1,
          clip_norm: float = 1.0, warmup: int = 50, threads: Optional[int] = 2,
          train_pairs: Optional[Iterable[dict]] = None, valid_pairs: Optional[list[dict]] = None,
          fft_sizes: Optional[tuple] = None, bank_dir=None, loss_terms: str = "sc+log",
          prior_starts: Optional[int] = None) -> dict:
    """Train and write ``model.pt``, ``config.json``, ``model.sha256`` (best on validation)
    plus ``checkpoint.pt`` and ``log.jsonl`` into ``out_dir``; returns the final config.

    ``train_pairs`` / ``valid_pairs`` (iterables of pair dicts) replace the corpus in tests.
    ``bank_dir`` (see :mod:`.bank`) trains a residual model on a fixed bank of pairs with
    analysis priors (train/valid splits of the bank); ``prior_starts`` refuses a bank whose
    priors were fitted from another number of EQ-fit starts.
    ``time_budget_s`` counts wall time over all (resumed) sessions; training stops cleanly
    before it runs out.
    """
    import torch.optim  # fine in training code (slow import)

    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(seed)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    space = ParamSpace(SAMPLE_RATE)
    loss_fn = MRSTFTLoss(fft_sizes, terms=loss_terms)
    valid_every = valid_every or ckpt_every

    if bank_dir is not None:
        from .bank import load as load_bank

        vb = load_bank(bank_dir, "valid", prior_starts)
        vpairs = [{k: np.array(v[i]) for k, v in vb.items()} for i in range(min(n_valid, len(vb["prior"])))]
        train_pairs = bank_pairs(bank_dir, "train", seed, prior_starts)
        data_summary = dict(source="pair bank", bank=str(bank_dir), valid_pairs=len(vpairs),
                            banks=[json.loads((Path(bank_dir) / f"{s}_bank.json").read_text())
                                   for s in ("train", "valid")])
        train_ds = None
        arch = dict(arch or {}, residual=True)
    elif train_pairs is None:
        train_ds, vpairs, data_summary = _corpus_sources(data_dir, length, seed, n_valid, channels)
    else:
        train_ds, vpairs = None, list(valid_pairs or [])
        data_summary = dict(source="in-memory pairs", valid_pairs=len(vpairs))
    valid = [_stack(vpairs[i:i + batch_size]) for i in range(0, len(vpairs), batch_size)]

    arch_cfg = dict(MatchNet().config if arch is None else MatchNet(**arch).config)
    model = MatchNet(**arch_cfg).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    step, elapsed, best = 0, 0.0, math.inf
    best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    history: list = []
    ckpt_path = out / CKPT
    if resume and ckpt_path.is_file():
        ck = torch.load(ckpt_path, map_location=device, weights_only=True)
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optimizer"])
        best_state, step, elapsed, best = ck["best_model"], int(ck["step"]), float(ck["elapsed"]), float(ck["best"])
        history = list(ck.get("history", []))

    base = baseline_loss(valid, loss_fn) if valid else math.nan
    log_f = open(out / "log.jsonl", "a")

    def log(rec: dict):
        log_f.write(json.dumps(rec) + "\n")
        log_f.flush()
        if progress:
            progress(rec)

    def save_ckpt():
        ck = dict(model=model.state_dict(), optimizer=opt.state_dict(), best_model=best_state,
                  step=step, elapsed=elapsed, best=best, history=history, seed=seed)
        tmp = out / (CKPT + ".tmp")
        torch.save(ck, tmp)
        os.replace(tmp, ckpt_path)

    def validate():
        nonlocal best, best_state
        if not valid:
            return None
        v = evaluate(model, valid, loss_fn, space)
        rec = dict(event="valid", step=step, valid_loss=v, unprocessed_loss=base, elapsed=round(elapsed, 1))
        history.append(dict(step=step, valid_loss=v))
        if v < best:
            best = v
            best_state = {k: t.detach().clone() for k, t in model.state_dict().items()}
            rec["best"] = True
        log(rec)
        return v

    log(dict(event="start", step=step, params=count_parameters(model), unprocessed_loss=base,
             data=data_summary))
    if step == 0 and valid:
        validate()

    pair_iter = iter(train_pairs) if train_pairs is not None else train_ds.stream(seed * 1_000_003 + step)
    if bank_dir is not None:
        pair_iter = bank_pairs(bank_dir, "train", seed * 1_000_003 + step)
    pre = _Prefetcher(pair_iter, batch_size)
    model.train()
    t_session = time.time()
    step_times: list[float] = []
    stopped = "steps"
    run_loss, n_run = 0.0, 0
    try:
        while step < steps:
            if time_budget_s is not None and step_times:
                est = float(np.median(step_times[-20:]))
                # leave room for a final validation + save (about 2 steps' worth)
                if elapsed + est * (3 + len(valid)) > time_budget_s:
                    stopped = "time_budget"
                    break
            t0 = time.time()
            batch = {k: v.to(device) for k, v in pre.next().items()}
            for g in opt.param_groups:
                g["lr"] = _lr(step, steps, lr, warmup)
            loss, _ = chain_loss(model, batch, loss_fn, space)
            opt.zero_grad(set_to_none=True)
            if torch.isfinite(loss):
                loss.backward()
                gn = torch.nn.utils.clip_grad_norm_(model.parameters(), clip_norm)
                if torch.isfinite(gn):
                    opt.step()
                run_loss += loss.item()
                n_run += 1
            step += 1
            dt = time.time() - t0
            step_times.append(dt)
            if step % log_every == 0 or step == 1:
                log(dict(event="train", step=step, loss=run_loss / max(1, n_run), lr=opt.param_groups[0]["lr"],
                         step_s=round(dt, 3), elapsed=round(elapsed, 1)))
                run_loss, n_run = 0.0, 0
            if step % valid_every == 0:
                validate()
            elapsed += time.time() - t0  # step + validation
            if step % ckpt_every == 0:
                t1 = time.time()
                save_ckpt()
                elapsed += time.time() - t1
    finally:
        pre.close()
    if not history or history[-1]["step"] != step:
        validate()
    save_ckpt()
    final = model.state_dict()
    model.load_state_dict(best_state)
    config = dict(
        architecture=arch_cfg, sample_rate=SAMPLE_RATE, param_fingerprint=fingerprint(),
        param_names=list(space.names), train_length=length,
        training=dict(steps=step, steps_planned=steps, batch_size=batch_size, length=length, lr=lr, seed=seed,
                      channels=channels, clip_norm=clip_norm, warmup=warmup, optimizer="Adam",
                      schedule="warmup+cosine", loss=loss_fn.config(),
                      stopped=stopped, wall_time_s=round(elapsed, 1),
                      mean_step_s=round(float(np.mean(step_times)), 3) if step_times else None),
        data=data_summary,
        validation=dict(best_loss=best, unprocessed_loss=base,
                        final_loss=history[-1]["valid_loss"] if history else None, history=history[-50:]),
        n_parameters=count_parameters(model),
    )
    save_model(model, config, out)
    log(dict(event="done", step=step, stopped=stopped, best_valid=best, unprocessed_loss=base,
             elapsed=round(elapsed, 1), session_s=round(time.time() - t_session, 1)))
    log_f.close()
    model.load_state_dict(final)
    return config
