#!/usr/bin/env python3
"""Write MODEL_CARD.md for a trained model folder from its config.json and the latest
quality benchmark table.

    python scripts/write_model_card.py models/default --benchmark benchmarks/results/quality.md \
        --bank-seconds 470 --corpus-seconds 144 --hardware "2-core x86-64 CPU, 24 GB RAM"
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

LOSS_TERMS = {  # config.json's training.loss.terms (absent in configs written before session 6: sc+log)
    "lin+log": "L1 linear + L1 natural-log magnitude (the MR-STFT that DeepAFx-ST and "
               "benchmarks/quality.py measure)",
    "sc+log": "spectral convergence + L1 log magnitude",
}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", type=Path)
    ap.add_argument("--benchmark", type=Path, required=True)
    ap.add_argument("--bank-seconds", type=float, required=True, help="wall time of the pair-bank build")
    ap.add_argument("--corpus-seconds", type=float, required=True, help="wall time of make_corpus.py")
    ap.add_argument("--hardware", required=True)
    ap.add_argument("--note", default="", help="how this particular run was made, if it differs")
    a = ap.parse_args(argv)
    cfg = json.loads((a.model / "config.json").read_text())
    tr, val, data = cfg["training"], cfg["validation"], cfg["data"]
    sha = (a.model / "model.sha256").read_text().split()[0]
    banks = {b["split"]: b for b in data.get("banks", [])}
    train_s = tr["wall_time_s"]
    total = a.corpus_seconds + a.bank_seconds + train_s
    text = f"""# Model card: afxmatch `{a.model.name}`

## What it is

A residual refiner of afxmatch's rule-based `analysis` estimate. A shared encoder
reads a 44.1 kHz mono log-mel spectrogram and pools its statistics; a controller MLP
reads the input and reference embeddings plus the analysis estimate. It outputs a
correction in logit space to all 25 normalised parameters (6-band EQ, compressor,
output gain) of the chain in `afxmatch/params.py`. The correction starts at exactly
zero.

- Parameters: {cfg['n_parameters']:,}, weights {(a.model / 'model.pt').stat().st_size / 1e6:.1f} MB (float32 state_dict).
- Architecture: `{json.dumps(cfg['architecture'])}`.
- Parameter-space fingerprint: `{cfg['param_fingerprint']}` (afxmatch refuses to load the
  model under any other).
- sha256 of `model.pt`: `{sha}`.

## Data

All training and validation audio comes from Debian packages, collected by
`scripts/make_corpus.py`:

- `wesnoth-1.16-music` (GPL-2);
- `sonic-pi-samples` (CC0);
- `hydrogen-drumkits`;
- `klettres-data` (real voices);
- `fluidsynth` + `fluid-soundfont-gm` renders of generated MIDI;
- `espeak-ng`.

The split into train and valid is by file, kit or speaker group, never by excerpt.
Validation pairs come only from held-out files.

- Pair bank: {banks.get('train', {}).get('pairs', '?')} training pairs (seed {banks.get('train', {}).get('seed', '?')}) and
  {banks.get('valid', {}).get('pairs', '?')} validation pairs (seed {banks.get('valid', {}).get('seed', '?')}).
  Each pair is {tr['length']} samples ({tr['length'] / 44100:.2f} s) per half, mono, at 44.1 kHz.

## Protocol

Synthetic style pairs follow DeepAFx-ST:
- Take a 2×L excerpt, peak-normalised to −12 dBFS.
- Input branch: a random EQ (p = 0.75) and a random expander (p = 0.1).
- Style branch: a random EQ (p = 0.75) and a random compressor (p = 0.75).
- Input = corrupted half A, reference = styled half B, target = styled half A.

The corruptions and styles are made with scipy/pedalboard code in
`afxmatch/model/pairs.py`, not with the torch renderer being trained. Each pair's prior
is the analysis estimate (the `analysis` method's EQ and compressor fit) from
{banks.get('train', {}).get('prior_starts', 1)} EQ-fit start(s). In use the model is given the `analysis` method's own
4-start fit (see the README's "The learned model").

- Loss: multi-resolution STFT, FFT sizes {tr['loss']['fft_sizes']}, hop
  {tr['loss']['hop_fraction']}, {LOSS_TERMS[tr['loss'].get('terms', 'sc+log')]}. It is computed
  on the chain's output after an RMS match to the reference, the stand-in for the
  pipeline's loudness match.
- Optimiser: Adam, lr {tr['lr']}, warm-up {tr['warmup']} + cosine, batch
  {tr['batch_size']}, gradient clipping {tr['clip_norm']}, seed {tr['seed']}.
- Run: {tr['steps']} steps of {tr['steps_planned']} planned, stopped by: {tr['stopped']}.
  The best weights on validation are kept.

## Cost

Measured on {a.hardware}, without a GPU:

| stage | wall time |
|---|---|
| corpus (`scripts/make_corpus.py`) | {a.corpus_seconds / 60:.1f} min |
| pair bank (part of `afxmatch train`) | {a.bank_seconds / 60:.1f} min |
| training (part of `afxmatch train`) | {train_s / 60:.1f} min |
| **total** | **{total / 60:.1f} min** |

Reproduce:
```sh
python scripts/make_corpus.py --out /tmp/afx_corpus --install
afxmatch train --data /tmp/afx_corpus --out models/default --bank /tmp/afx_bank
```

{a.note}

## Validation (training loss, {data.get('valid_pairs')} held-out pairs)

| | MR-STFT loss |
|---|---|
| unprocessed input | {val['unprocessed_loss']:.4f} |
| step 0 (= the analysis prior) | {val['history'][0]['valid_loss']:.4f} |
| best | {val['best_loss']:.4f} |

## Benchmark (DESIGN.md §5 metrics)

{a.benchmark.read_text().strip()}

## Loading

`model.pt` is a plain state_dict. For inference (the default `--method model`)
afxmatch reads it without torch (`afxmatch/model/io.read_state_dict`: a restricted
unpickler that allows only the ordered dict, the tensor rebuild function and three
storage types) and runs the network in numpy (`afxmatch/model/numpy_net.py`, within
~2e-7 of the torch network's parameters). Training and `--method optimise` load it with
`torch.load(weights_only=True)`. Both check the sha256 and the parameter-space
fingerprint first.

## Limits

- Parameters are static over the file.
- The model saw synthetic corruptions of Debian-packaged music and speech: no
  commercial masters.
- The encoder sees mono 44.1 kHz windows: other rates are resampled for analysis
  only, and the render runs at the native rate.
"""
    (a.model / "MODEL_CARD.md").write_text(text)
    print(f"wrote {a.model / 'MODEL_CARD.md'}")


if __name__ == "__main__":
    main()
