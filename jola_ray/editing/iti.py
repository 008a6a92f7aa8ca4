"""ITI (Li et al. 2023, "Inference-Time Intervention"), for LoFiT's TruthfulQA comparison.

Building (no training), from labelled texts (a prompt continued with a true or a false answer;
the method builds them from the training split):

1. each head's output (its ``head_dim`` slice of the ``o_proj`` input) is read at the last token;
2. the texts are split, with the run's seed, into a probe-training 80 % and a validation 20 %;
   per head a logistic-regression probe (L2, sklearn's default ``C = 1``: loss
   ``mean log-loss + ||w||^2 / (2 n)``, full-batch L-BFGS, all heads at once) is fit on the 80 %
   and scored on the 20 %;
3. the ``top_k`` heads by validation accuracy are kept (ties: lower layer, then lower head);
4. each kept head's direction is the mass-mean shift ``mu_true - mu_false`` (all texts), unit
   ``u``, and ``sigma`` the (population) std of the activations projected on ``u``;
5. at inference the head's output moves by ``alpha * sigma * u`` at every token (the form the
   ITI authors' released models bake into ``o_proj``'s bias).
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from typing import Any

import torch
from torch import nn

from jola_ray.editing.activations import last_token_activations
from jola_ray.editing.hooked import HookedEdit
from jola_ray.editing.sites import HeadSite, find_head_sites, model_type_of
from jola_ray.errors import ConfigError

VALIDATION_FRACTION = 0.2


def fit_probes(
    x: torch.Tensor, y: torch.Tensor, max_iter: int = 100
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-probe logistic regression: ``x`` (probes, n, d), ``y`` (n,) in {0, 1} ->
    weights (probes, d) and biases (probes,)."""
    probes, n, d = x.shape
    w = torch.zeros(probes, d, dtype=torch.float64, requires_grad=True)
    b = torch.zeros(probes, dtype=torch.float64, requires_grad=True)
    xd, yd = x.double(), y.double()
    opt = torch.optim.LBFGS([w, b], max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        logits = torch.einsum("pnd,pd->pn", xd, w) + b[:, None]  # (probes, n)
        loss = nn.functional.binary_cross_entropy_with_logits(
            logits, yd.expand(probes, n), reduction="none"
        ).mean(dim=1)
        total = (loss + (w * w).sum(dim=1) / (2 * n)).sum()
        total.backward()
        return total

    opt.step(closure)
    return w.detach().float(), b.detach().float()


def probe_accuracy(x: torch.Tensor, y: torch.Tensor, w: torch.Tensor, b: torch.Tensor):
    """``(probes,)`` accuracy of each probe on ``x`` (probes, n, d)."""
    pred = (torch.einsum("pnd,pd->pn", x, w) + b[:, None]) > 0  # (probes, n)
    return (pred == y.bool()).float().mean(dim=1)


def mass_mean_shift(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(u, sigma)`` per probe: unit ``mean(x|true) - mean(x|false)`` (probes, d) and the
    population std of ``x . u`` (probes,)."""
    direction = x[:, y == 1].mean(dim=1) - x[:, y == 0].mean(dim=1)  # (probes, d)
    u = direction / direction.norm(dim=1, keepdim=True).clamp_min(1e-12)
    proj = torch.einsum("pnd,pd->pn", x, u)  # (probes, n)
    return u, proj.std(dim=1, unbiased=False)


class ITIEdit(HookedEdit):
    method = "iti"

    def __init__(self, sites: list[HeadSite], config: Any, model_type: str) -> None:
        super().__init__(config, model_type)
        self._sites = list(sites)
        n_layers, n_heads, d = len(sites), sites[0].num_heads, sites[0].head_dim
        self.num_heads, self.head_dim = n_heads, d
        # Built from data, not trained: buffers (saved with the edit, never optimised).
        self.register_buffer("direction", torch.zeros(n_layers, n_heads, d))  # unit u per head
        self.register_buffer("sigma", torch.zeros(n_layers, n_heads))
        self.register_buffer("accuracy", torch.zeros(n_layers, n_heads))  # probe, validation
        self.register_buffer("selected", torch.zeros(n_layers, n_heads, dtype=torch.bool))

    def geometry(self) -> dict[str, Any]:
        return {
            "num_layers": len(self._sites),
            "num_heads": self.num_heads,
            "head_dim": self.head_dim,
        }

    def shift(self) -> torch.Tensor:
        """``(layers, heads, head_dim)``: ``alpha * sigma * u`` on the selected heads, else 0."""
        scale = float(self.config.alpha) * self.sigma * self.selected  # (layers, heads)
        return scale[..., None] * self.direction

    @torch.no_grad()
    def build(
        self, model: nn.Module, tokenizer, texts: Sequence[tuple[str, str, bool]], seed: int
    ) -> None:
        """Probe and select heads from ``(prompt, answer, is_true)`` texts."""
        labels = torch.tensor([bool(t) for _, _, t in texts], dtype=torch.long)
        if len(texts) < 2 or labels.min() == labels.max():
            raise ConfigError(
                f"iti: probing needs true and false answers; got {int(labels.sum())} true and "
                f"{int((1 - labels).sum())} false"
            )
        modules = [s.o_proj for s in self._sites]
        acts = last_token_activations(
            model, tokenizer, [(p, a) for p, a, _ in texts], modules, read="input"
        )
        n_layers, n_heads, d = len(self._sites), self.num_heads, self.head_dim
        # per layer (n, H*d) -> (n, H, d); stacked (n, L, H, d) -> probes (L*H, n, d)
        x = torch.stack([a.unflatten(-1, (n_heads, d)) for a in acts], dim=1)
        x = x.flatten(1, 2).transpose(0, 1).contiguous()
        order = torch.randperm(len(texts), generator=torch.Generator().manual_seed(seed))
        n_val = max(1, int(round(VALIDATION_FRACTION * len(texts))))
        val, fit = order[:n_val], order[n_val:]
        with torch.enable_grad():
            w, b = fit_probes(x[:, fit], labels[fit])
        acc = probe_accuracy(x[:, val], labels[val], w, b)  # (L*H,)
        k = min(int(self.config.top_k), n_layers * n_heads)
        top = torch.argsort(-acc, stable=True)[:k]  # ties: lower flat index (layer, head) first
        u, sigma = mass_mean_shift(x, labels)
        selected = torch.zeros(n_layers * n_heads, dtype=torch.bool)
        selected[top] = True
        device = self.direction.device
        self.direction.copy_(u.view(n_layers, n_heads, d).to(device))
        self.sigma.copy_(sigma.view(n_layers, n_heads).to(device))
        self.accuracy.copy_(acc.view(n_layers, n_heads).to(device))
        self.selected.copy_(selected.view(n_layers, n_heads).to(device))

    def _hook(self, model: nn.Module) -> list:
        return [
            site.o_proj.register_forward_pre_hook(partial(self._pre_hook, row), with_kwargs=True)
            for row, site in enumerate(self._sites)
            if bool(self.selected[row].any())
        ]

    def _pre_hook(self, row: int, module, args, kwargs):
        if not self._enabled:
            return None
        x = args[0] if args else kwargs["input"]  # (batch, seq, H * d)
        shift = self.shift()[row].flatten()  # (H, d) -> (H * d,)
        out = (x.float() + shift).to(x.dtype)
        if args:
            return (out, *args[1:]), kwargs
        return args, {**kwargs, "input": out}

    def inspect(self):
        """One row per (layer, head): probe accuracy, sigma, selected."""
        import pandas as pd

        n_layers, n_heads = self.accuracy.shape
        return pd.DataFrame(
            {
                "layer": [la for la in range(n_layers) for _ in range(n_heads)],
                "head": [h for _ in range(n_layers) for h in range(n_heads)],
                "probe_accuracy": self.accuracy.flatten().tolist(),
                "sigma": self.sigma.flatten().tolist(),
                "selected": self.selected.flatten().tolist(),
            }
        )

    def summary(self) -> dict[str, Any]:
        pairs = self.selected.nonzero().tolist()  # (layer, head) of each kept head, in order
        return {"num_selected_heads": len(pairs), "selected_heads": [[la, h] for la, h in pairs]}


def build_iti(model: nn.Module, tokenizer, config: Any, texts, seed: int) -> ITIEdit:
    """Probe the untouched model on ``texts``, then freeze it and attach the shifts."""
    sites = find_head_sites(model)
    edit = ITIEdit(sites, config, model_type_of(model))
    edit.to(model.get_input_embeddings().weight.device)
    edit.build(model, tokenizer, texts, seed)
    return edit.attach(model)
