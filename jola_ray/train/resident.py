"""What a worker process keeps between trials: the frozen base model and the task data.

A sweep's worker (a reused Ray actor) runs trial after trial. Every trial of one model starts
from the same frozen weights, so reloading them (16 GB from disk for an 8B model in bf16) and
rebuilding the splits and their tokenized datasets each time is waste. ``Resident`` keeps:

* the base model, its tokenizer and device, for one model key (model spec, dtype,
  quantization, attention implementation, device, trust_remote_code, memory fraction);
* the splits per (task, data_dir, seed, sizes), and the tokenized TRL datasets per split key,
  model key and dataset kind (a few, least recently used dropped first).

Reuse is safe because every method's edit is removed exactly (``remove()`` takes the hooks and
``model.head_edit`` away and restores every ``requires_grad`` flag). Before handing the model to
a trial the resident checks it is the base model it loaded: the same parameter fingerprint
(names, shapes, sums, as LoFiT checks before its second stage), the same hook count and flags,
no ``head_edit``. A model that fails the check (a trial that died with its edit attached) is
dropped and loaded again.

``end_trial`` releases what a finished trial held: TRL's per-instance ``forward`` patch and
``config.use_cache`` are undone, the model is put back in eval mode, and the trainer, optimizer,
edit and their caches (reference cycles) are collected at once, with the CUDA cache emptied, so
a worker's allocated memory returns to the model's size between trials.

``freeze=True`` (the process's ``WORKER``) then moves every object still alive into Python's
permanent garbage-collector generation (``gc.freeze``): the Trainer runs a full ``gc.collect()``
at the start of every ``train()`` (accelerate's ``free_memory``), which otherwise walks every
object of torch, transformers and the kept model again (about a second on a small CPU) before
the trial's first step. A model load freezes too, after one collection, so a fresh worker's
first trial does not pay that walk either (0.26 s a collection on this CPU, three of them in a
fresh worker's first trial before). Dropping the model unfreezes first, so nothing kept stays
uncollectable.

``WORKER`` is the process's resident; ``run_in_worker`` is the sweep's run function.
"""

from __future__ import annotations

import gc
import logging
from collections import OrderedDict
from collections.abc import Callable

import torch

log = logging.getLogger(__name__)

MAX_DATA_ENTRIES = 16  # splits and tokenized datasets kept per worker


def model_key(cfg) -> tuple:
    """What identifies a loaded base model: two configs with equal keys load equal models."""
    return (
        cfg.model,
        cfg.dtype,
        cfg.quantization,
        cfg.attn_implementation,
        cfg.device,
        cfg.trust_remote_code,
        cfg.gpu_memory_fraction,
    )


def split_key(cfg) -> tuple:
    """What identifies a run's splits: the task, its data, the sampling seed and the sizes."""
    return (cfg.task, cfg.data_dir, cfg.seed, cfg.train_size, cfg.dev_size, cfg.test_size)


def base_fingerprint(model: torch.nn.Module, handle=None) -> tuple:
    """Names, shapes and a checksum of the base model's parameters (not ``handle``'s): the
    check that a kept model, or a model after an earlier stage's removal, is the base model."""
    own = {id(p) for p in handle.parameters()} if handle is not None else set()
    return tuple(
        (n, tuple(p.shape), float(p.detach().float().sum()))
        for n, p in model.named_parameters()
        if id(p) not in own
    )


def _hook_count(model: torch.nn.Module) -> int:
    return sum(
        len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks)
        for m in model.modules()
    )


def _grad_flags(model: torch.nn.Module) -> tuple:
    return tuple(p.requires_grad for p in model.parameters())


class Resident:
    """A worker's base model and data, kept between trials (see the module docstring)."""

    def __init__(self, freeze: bool = False) -> None:
        self.freeze = freeze
        self.key: tuple | None = None
        self.model = self.tokenizer = self.device = None
        self._fingerprint: tuple | None = None
        self._hooks = 0
        self._flags: tuple = ()
        self._use_cache = None
        self.loads = 0  # base-model loads so far (tests, benchmarks)
        self.reuses = 0
        self._data: OrderedDict = OrderedDict()

    # --- the base model -------------------------------------------------------------------

    def base_model(self, cfg, load: Callable):
        """``(model, tokenizer, device)`` for ``cfg``: the kept one when it is still the base
        model of the same key, else ``load(cfg)`` (after releasing the old one)."""
        key = model_key(cfg)
        if key == self.key and self._is_clean():
            self.reuses += 1
            self.model.eval()
            return self.model, self.tokenizer, self.device
        if key == self.key:
            log.warning("kept model %s no longer matches its base weights; loading it again", key)
        self.drop_model()
        model, tok, device = load(cfg)
        self.key, self.model, self.tokenizer, self.device = key, model, tok, device
        self._fingerprint = base_fingerprint(model)
        self._hooks = _hook_count(model)
        self._flags = _grad_flags(model)
        self._use_cache = getattr(model.config, "use_cache", None)
        self.loads += 1
        if self.freeze:  # a fresh worker's first trial: the Trainer's full collection is quick
            release_memory()
            gc.freeze()
        return model, tok, device

    def _is_clean(self) -> bool:
        m = self.model
        return (
            not hasattr(m, "head_edit")
            and "forward" not in m.__dict__
            and _hook_count(m) == self._hooks
            and _grad_flags(m) == self._flags
            and base_fingerprint(m) == self._fingerprint
        )

    def drop_model(self) -> None:
        """Forget the kept model (and its tokenized datasets) and free its memory."""
        if self.model is None:  # nothing held (a fresh worker): no collection to pay for
            return
        self.key = self.model = self.tokenizer = self.device = None
        self._fingerprint = None
        for k in [k for k in self._data if k[0] == "datasets"]:
            del self._data[k]
        if self.freeze:
            gc.unfreeze()  # the dropped model's objects become collectable again
        release_memory()

    def end_trial(self) -> None:
        """Undo a trial's marks on the kept model and free everything else the trial held."""
        m = self.model
        if m is not None:
            m.__dict__.pop("forward", None)  # TRL's fused-LM-head patch of this instance
            if self._use_cache is not None:
                m.config.use_cache = self._use_cache  # the Trainer sets it False
            m.eval()
        release_memory()
        if self.freeze:
            gc.freeze()  # what survives a trial is long-lived: later collections skip it

    # --- splits and tokenized datasets ----------------------------------------------------

    def cached(self, key: tuple, build: Callable):
        """``build()``'s value, kept under ``key`` (least recently used entries dropped)."""
        if key in self._data:
            self._data.move_to_end(key)
            return self._data[key]
        value = build()
        self._data[key] = value
        while len(self._data) > MAX_DATA_ENTRIES:
            self._data.popitem(last=False)
        return value

    def splits(self, cfg, build: Callable):
        return self.cached(("splits", split_key(cfg)), build)

    def datasets(self, cfg, kind: str, build: Callable):
        """``build()``'s TRL datasets (and what fitting them to ``max_length`` did), kept per
        split, model, EOS and length setting, and dataset kind."""
        key = ("datasets", split_key(cfg), model_key(cfg), cfg.append_eos, cfg.max_length, kind)
        return self.cached(key, build)


def release_memory() -> None:
    """Free unreachable objects now (trainer, optimizer and edit hold reference cycles) and
    the CUDA cache (a trial's end; a pack that ran out of memory, before its halves)."""
    gc.collect()
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.empty_cache()


WORKER = Resident(freeze=True)


def run_in_worker(cfg, report=None, resume_from=None, **kwargs) -> dict:
    """``jola_ray.train.pipeline.run`` with the process's ``WORKER`` resident (the sweep's run;
    ``kwargs``: ``run``'s ``task`` and ``splits``)."""
    from jola_ray.train.pipeline import run

    return run(cfg, report=report, resume_from=resume_from, resident=WORKER, **kwargs)


def run_pack_in_worker(cfgs, report=None, resume_from=None, **kwargs) -> list:
    """``jola_ray.train.pack.run_pack`` with the process's ``WORKER`` resident (the sweep's run
    of a pack trial): a worker that ran trials or packs of the same model loads it once."""
    from jola_ray.train.pack import run_pack

    return run_pack(cfgs, report=report, resume_from=resume_from, resident=WORKER, **kwargs)
