"""A minimal Adam with cosine learning-rate decay.

``torch.optim`` imports ``torch._dynamo`` (about 2 s on this CPU), which would dominate a
single-file match; this is the same update rule in a few lines.
"""

from __future__ import annotations

import math

import torch


class Adam:
    def __init__(self, tensors: list[torch.Tensor], lr: float, steps: int,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8):
        self.tensors, self.lr, self.steps, self.betas, self.eps = tensors, lr, max(1, steps), betas, eps
        self.m = [torch.zeros_like(t) for t in tensors]
        self.v = [torch.zeros_like(t) for t in tensors]
        self.t = 0

    def step(self, loss: torch.Tensor) -> None:
        """Back-propagate ``loss`` and update the tensors in place."""
        grads = torch.autograd.grad(loss, self.tensors)
        self.t += 1
        b1, b2 = self.betas
        lr = self.lr * 0.5 * (1 + math.cos(math.pi * min(self.t, self.steps) / self.steps))
        with torch.no_grad():
            for x, g, m, v in zip(self.tensors, grads, self.m, self.v):
                g = torch.nan_to_num(g)
                m.mul_(b1).add_(g, alpha=1 - b1)
                v.mul_(b2).addcmul_(g, g, value=1 - b2)
                m_hat = m / (1 - b1 ** self.t)
                v_hat = v / (1 - b2 ** self.t)
                x.sub_(lr * m_hat / (v_hat.sqrt() + self.eps))
