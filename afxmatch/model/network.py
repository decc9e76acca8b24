"""The matching network: a shared log-mel encoder and a controller MLP.

``encoder(mono) -> embedding``: log-mel -> 1-D conv stack over time (mels as channels) ->
mean + std pooling over time (any length works), concatenated with the per-band mean/std
of the log-mel itself and a few frame-level quantiles (direct spectral / dynamics cues),
then a linear projection.

``controller([e_in, e_ref, e_ref - e_in]) -> u`` in (0, 1)^25 via a sigmoid; the final
layer starts at zero weight with a bias that gives (almost) the neutral defaults.
"""

from __future__ import annotations

import torch
from torch import nn

from ..params import ParamSpace
from .features import LogMel

# shared with the torch-free inference pass (numpy_net), defined there once
from .numpy_net import DEFAULT_CONFIG, GN_EPS, GROUPS, PRIOR_EPS, QUANTILES

INIT_MARGIN = 0.03


class Encoder(nn.Module):
    def __init__(self, sample_rate=44100, n_fft=2048, hop=512, n_mels=64, channels=128,
                 n_conv=4, embed=128, **_):
        super().__init__()
        self.mel = LogMel(sample_rate, n_fft, hop, n_mels)
        layers, c_in = [], n_mels
        for i in range(n_conv):
            layers += [nn.Conv1d(c_in, channels, 3, padding=2 ** i, dilation=2 ** i),
                       nn.GroupNorm(GROUPS, channels, eps=GN_EPS), nn.GELU()]
            c_in = channels
        self.conv = nn.Sequential(*layers)
        n_stats = 2 * channels + 2 * n_mels + len(QUANTILES)
        self.proj = nn.Sequential(nn.Linear(n_stats, embed), nn.GELU())
        self.register_buffer("q", torch.tensor(QUANTILES), persistent=False)

    def stats(self, mel: torch.Tensor, joint: bool = False) -> torch.Tensor:
        """``(batch, n_mels, frames)`` log-mel -> pooled statistics ``(batch, n_stats)``.

        ``joint``: treat the batch as windows of one signal and pool over all their frames
        together, giving ``(1, n_stats)`` (inference over windows spread across a file).
        """
        h = self.conv(mel)
        if joint:
            h = h.permute(1, 0, 2).reshape(1, h.shape[1], -1)
            mel = mel.permute(1, 0, 2).reshape(1, mel.shape[1], -1)
        frame_level = 10 * torch.log10(torch.mean(10 ** (2 * mel), dim=1) + 1e-10) / 20  # (B, T)
        return torch.cat([h.mean(-1), h.std(-1, unbiased=False), mel.mean(-1),
                          mel.std(-1, unbiased=False),
                          torch.quantile(frame_level, self.q.to(mel), dim=-1).T], dim=-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Mono audio ``(batch, samples)`` -> embedding ``(batch, embed)``."""
        return self.proj(self.stats(self.mel(x)))

    def embed_stats(self, stats: torch.Tensor) -> torch.Tensor:
        return self.proj(stats)


class MatchNet(nn.Module):
    def __init__(self, **config):
        super().__init__()
        cfg = dict(DEFAULT_CONFIG)
        cfg.update(config)
        self.config = cfg
        self.encoder = Encoder(**cfg)
        e, h = cfg["embed"], cfg["hidden"]
        self.residual = bool(cfg["residual"])
        n_in = 3 * e + (cfg["n_params"] if self.residual else 0)
        self.controller = nn.Sequential(nn.Linear(n_in, h), nn.GELU(), nn.Linear(h, h), nn.GELU(),
                                        nn.Linear(h, cfg["n_params"]))
        last = self.controller[-1]
        nn.init.zeros_(last.weight)
        if self.residual:  # start exactly at the prior: a zero correction
            nn.init.zeros_(last.bias)
            return
        with torch.no_grad():
            u0 = ParamSpace(cfg["sample_rate"]).normalise(ParamSpace(cfg["sample_rate"]).defaults())
            u0 = u0.clip(INIT_MARGIN, 1 - INIT_MARGIN)
            # the margin leaves a little make-up gain: cancel it with the output gain
            space = ParamSpace(cfg["sample_rate"])
            names = list(space.names)
            makeup = space["comp_makeup_db"].denormalise(float(u0[names.index("comp_makeup_db")]))
            g = space["out_gain_db"]
            u0[names.index("out_gain_db")] = g.normalise(g.default - makeup)
            last.bias.copy_(torch.as_tensor(u0).logit().float())

    def control(self, e_in: torch.Tensor, e_ref: torch.Tensor,
                prior: torch.Tensor | None = None) -> torch.Tensor:
        """Embeddings (and, for a residual model, the prior ``(batch, 25)`` in [0, 1]) ->
        normalised parameters. A residual model corrects the prior in logit space."""
        feats = [e_in, e_ref, e_ref - e_in]
        if not self.residual:
            return torch.sigmoid(self.controller(torch.cat(feats, dim=-1)))
        if prior is None:
            raise ValueError("this model refines a prior: pass the analysis estimate (normalised)")
        p = prior.to(e_in).clamp(PRIOR_EPS, 1 - PRIOR_EPS)
        return torch.sigmoid(torch.logit(p) + self.controller(torch.cat(feats + [p], dim=-1)))

    def forward(self, x_in: torch.Tensor, x_ref: torch.Tensor,
                prior: torch.Tensor | None = None) -> torch.Tensor:
        """Mono ``(batch, samples)`` input and reference (+ prior) -> normalised params ``(batch, 25)``."""
        return self.control(self.encoder(x_in), self.encoder(x_ref), prior)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
