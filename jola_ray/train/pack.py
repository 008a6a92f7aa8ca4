"""A trial pack: K configurations of one group trained together over one frozen model.

``run_pack(cfgs, ...)`` is ``run`` for K configurations that differ only in hyperparameters
(same task, seed, model, method, data and batching; ``pack_problems`` lists what must agree).
The model is loaded and the data tokenized once; the configurations' edits are the members of
one ``PackedHeadEdit``; every optimizer step is one forward and backward over the live members'
batches stacked along the batch dimension (K' x B rows, each slice edited by its own member),
with the LM head applied at the answer positions only, as a single run's step
(``answer_loss.answer_nll_rows``: each member's loss is its block of rows' sum).

The training loop is the same TRL trainer a single run uses, so the data order (the Trainer's
seeded sampler: every member sees the same examples in the same order), the collation, the loss
normalisation, gradient accumulation, epoch-end evaluation and checkpoint timing are the
single run's. Per member, as a single run has them:

- its own AdamW parameter groups (its lr, epsilon, weight decay), its own learning-rate schedule
  (``LambdaLR`` with one schedule per group), its own gradient clipping (by its own norm);
- its own gate-noise generator: each starts from the state the global RNG has when training
  starts, which is the state a single run draws its gate noise from (so the noise matches);
- its own penalty and penalty schedule, its own early stopping and epochs;
- dev evaluation, best-epoch tracking, test evaluation and final files with the member attached
  alone (``PackedHeadEdit.solo``), i.e. the single run's code: as there, the Trainer's own
  evaluation loop is skipped and the epoch's one dev pass gives the dev score and, where it is
  free or read (``pipeline.needs_dev_loss``), ``dev_loss``.

A member that stops early, reaches its epochs or is pruned leaves the stack: the next step's
forward is smaller. ``prune(epoch, rows) -> members to stop`` (the sweep's successive halving)
sees the live members' rows after every epoch; a pruned member has no test evaluation.

Outputs per member: its ``output_dir`` exactly as a single run's (``config.yaml``, ``final/``
with ``metrics.json``, ``predictions.jsonl``, ``gates.csv``, ``edit.safetensors``). The pack's
epoch checkpoints (``pack_dir/<stage>/checkpoint-N``) hold the Trainer's files for all members
plus ``pack_state.json``, ``noise_rng.pt`` and ``members/<k>/`` (each member's ``run_state.json``
and best edit); ``run_pack(..., resume_from=that_dir)`` continues to the same results.
``report(rows, checkpoint_dir)`` is called after every epoch with ``{member: metrics}`` of the
members that trained that epoch, and once at the end with the finished members' final metrics.

Cost: the pack's wall seconds are shared, each epoch's among the members live in it;
every member's metrics say so (``pack_size``, ``cost_shared: true``).

Memory: a pack that runs out of memory splits into halves run one after the other, which
continue from its newest checkpoint when it has one (``run_pack``, ``pack_split``; each part's
checkpoints carry ``split.json``).

Methods that pack: ``jola`` (every ``jola.gates`` and ``jola.parts``, at ``jola.site: heads``)
and ``lofit`` (both stages) on SFT tasks. ``zero_shot`` trains nothing, the baselines (BitFit,
RED, LoReFT, RepE, ITI, LoRA) edit other modules, JoLA at other sites hooks whole-layer outputs,
and preference (DPO) tasks use TRL's DPO loss: all run unpacked (``packable``,
``Method.unpacked_reason``).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from jola_ray.errors import CheckpointError, ConfigError, DataError, TrainingError
from jola_ray.train.config import RunConfig
from jola_ray.train.cost import CostMeter
from jola_ray.train.pack_split import (
    MEMBERS_DIR,
    NOISE_FILE,
    PACK_STATE_FILE,
    Split,
    write_pack_state,
)
from jola_ray.train.state import RunState

log = logging.getLogger(__name__)

# Leaves every member of a pack must share: what loads the model, builds the data and batches.
SHARED_FIELDS = (
    "task",
    "seed",
    "model",
    "method",
    "dtype",
    "quantization",
    "trust_remote_code",
    "attn_implementation",
    "device",
    "gpu_memory_fraction",
    "data_dir",
    "train_size",
    "dev_size",
    "test_size",
    "max_length",
    "append_eos",
    "batch_size",
    "grad_accum_steps",
    "save_total_limit",
)

PackReport = Callable[[dict[int, dict], str], None]
Prune = Callable[[int, dict[int, dict]], set[int]]


def packable(method: str, training: str = "sft") -> bool:
    """Whether ``method`` trains in a pack: its registry entry says ``packs`` (head edits) and
    the task trains with SFT. Other methods and preference tasks run unpacked."""
    from jola_ray.methods import registry

    return bool(registry.get(method).packs) and training == "sft"


def pack_problems(cfgs: Sequence[RunConfig]) -> list[str]:
    """Why ``cfgs`` cannot share one pack (empty when they can)."""
    if not cfgs:
        return ["a pack needs at least one configuration"]
    problems = []
    for name in SHARED_FIELDS:
        values = [getattr(c, name) for c in cfgs]
        if any(v != values[0] for v in values):
            problems.append(f"{name}: members differ ({', '.join(sorted(set(map(repr, values))))})")
    if not problems:
        from jola_ray.methods import registry

        method = registry.get(cfgs[0].method)
        reasons = {method.unpacked_reason(c.method_config) for c in cfgs} - {None}
        problems += sorted(reasons)
    outs = [c.output_dir for c in cfgs]
    if len(set(outs)) != len(outs):
        problems.append("output_dir: every member needs its own")
    return problems


def check_pack_checkpoint(directory: str | Path, members: int) -> dict:
    """The pack state of checkpoint ``directory`` after checking every file its resume reads:
    ``pack_state.json``; unless the pack had finished, the Trainer's files (every member's
    edit, optimizer and schedule state, the RNG, the step), the noise generators and each
    member's run state and best edit (``state.check_checkpoint`` of ``members/<k>``).

    Raises:
        CheckpointError: naming the missing or unreadable file (the sweep then falls back to
            the checkpoint before, as for a single trial).
        TrainingError: the checkpoint is a pack of another size.
    """
    from jola_ray.train.state import TRAINER_FILES, check_checkpoint, check_files, read_json

    directory = Path(directory)
    state_path = directory / PACK_STATE_FILE
    if not state_path.is_file():
        raise CheckpointError(
            f"resume_from: {directory} is not a checkpoint of a pack (no {PACK_STATE_FILE})",
            str(state_path),
        )
    pack_state = read_json(state_path)
    if pack_state.get("members") != members:
        raise TrainingError(
            f"resume_from: {directory} holds a pack of {pack_state.get('members')} "
            f"configurations, not {members}"
        )
    if pack_state.get("finished"):
        return pack_state
    check_files(directory, TRAINER_FILES)
    if (directory / NOISE_FILE).is_file():
        check_files(directory, (NOISE_FILE,))
    for k in range(members):
        check_checkpoint(directory / MEMBERS_DIR / str(k), trainer_files=False)
    return pack_state


@dataclass
class _Member:
    """One configuration inside the pack: its run context, state and per-step bookkeeping."""

    index: int
    ctx: object  # pipeline._Run
    stages: tuple = ()  # its method's recipe (methods.base.Stage)
    state: RunState | None = None
    handle: object = None  # the current stage's Attached handle (``handle.edit``: a HeadEdit)
    carry: dict = field(default_factory=dict)  # what earlier stages handed on
    schedule: object = None  # LRSchedule
    penalty_fn: Callable | None = None
    logs: dict = field(default_factory=lambda: {"task_loss": [], "penalty": []})
    lr0: float = 0.0  # the stage's peak rate
    lr: float = float("nan")  # the rate of the member's latest step
    pending: dict | None = None  # this epoch's row, reported at the checkpoint
    pruned_at: int | None = None

    @property
    def cfg(self) -> RunConfig:
        return self.ctx.cfg

    def done(self) -> bool:
        s = self.state
        return self.pruned_at is not None or s.stopped or len(s.history) >= self.cfg.epochs


class PackOutOfMemory(TrainingError):
    """A pack ran out of memory; ``size`` configurations were in it."""

    def __init__(self, message: str, size: int) -> None:
        super().__init__(message)
        self.size = size


def run_pack(
    cfgs: Sequence[RunConfig],
    report: PackReport | None = None,
    resume_from: str | None = None,
    *,
    pack_dir: str | Path,
    prune: Prune | None = None,
    task=None,
    splits=None,
    resident=None,
) -> list[dict | None]:
    """Train and test K configurations together; each member's final metrics (None: pruned).

    ``resident`` (a sweep worker's ``resident.Resident``, as for ``pipeline.run``): the base
    model, the splits and the tokenized datasets come from it when it holds them, and the pack
    leaves the model exactly as the base again with the trial's memory released.

    A pack that runs out of memory splits itself (``jola_ray.train.pack_split``): its first half,
    then its second, each a pack of its own (``pack_dir/part-<i>``), halved again while a part
    does not fit; members keep their indices in ``report`` and ``prune`` (which then cuts within
    a part). Before its first checkpoint the halves start from scratch; after it, each half
    continues from the part's newest checkpoint cut down to its members, so no trained epoch
    is lost. Each part's checkpoints carry the split (``split.json``: the parts, which one,
    the finished parts' results, the starts of the parts to come), so a resumed split pack
    continues the part it was in.

    Raises:
        ConfigError: the configurations cannot share a pack (``pack_problems``) or the task is
            a preference task.
        TrainingError: as ``run``; a pack of one configuration that runs out of memory names
            its settings (``PackOutOfMemory``).
    """
    from jola_ray.train.resident import release_memory

    pack_dir = Path(pack_dir)
    start_dir = pack_dir / "split"  # the starts of parts cut from a checkpoint
    if resume_from is None:
        split = Split.whole(len(cfgs))
    else:
        split = Split.resumed(resume_from, len(cfgs), start_dir)
    part_resume = resume_from
    while split.current < len(split.parts):
        part = split.part
        reported: list[str] = []
        part_dir = pack_dir if len(split.parts) == 1 else pack_dir / f"part-{split.current}"

        def part_report(rows, checkpoint_dir, part=part, reported=reported):
            if len(split.parts) > 1:  # the split travels with every checkpoint of a part
                split.write(checkpoint_dir)
            reported.append(checkpoint_dir)
            if report is not None:
                report({part[k]: r for k, r in rows.items()}, checkpoint_dir)

        def part_prune(epoch, rows, part=part):
            cut = prune(epoch, {part[k]: r for k, r in rows.items()})
            return {part.index(k) for k in cut}

        try:
            finals = _run_whole_pack(
                [cfgs[k] for k in part],
                part_report,
                part_resume,
                pack_dir=part_dir,
                prune=part_prune if prune is not None else None,
                task=task,
                splits=splits,
                resident=resident,
            )
        except PackOutOfMemory as err:
            if len(part) == 1:
                raise
            # where the halves start: the part's newest checkpoint (epochs already trained are
            # kept), else where the part itself started (a cut checkpoint, or scratch)
            newest = [d for d in reported if (Path(d) / PACK_STATE_FILE).is_file()]
            source = newest[-1] if newest else part_resume
            try:
                sizes = split.halve(start_dir, source)
            except (CheckpointError, TrainingError) as cut_err:
                raise PackOutOfMemory(f"{err}; splitting it failed: {cut_err}", len(part)) from err
            where = f"from its checkpoint {source}" if source else "from scratch"
            log.warning(
                "trial pack of %d configurations did not fit in memory; splitting it into "
                "packs of %d and %d, which continue %s (%s)",
                len(part),
                *sizes,
                where,
                err,
            )
            # the failed part's files go (what it trained is in the halves' starts)
            for path in [part_dir] if part_dir != pack_dir else list(pack_dir.iterdir()):
                if path != start_dir:
                    shutil.rmtree(path, ignore_errors=True)
            part_resume = split.starts[split.current]
            release_memory()
            continue
        split.advance(finals)
        if split.current < len(split.parts):
            part_resume = split.starts[split.current]
    return [split.results[k] for k in range(len(cfgs))]


def _run_whole_pack(
    cfgs: Sequence[RunConfig],
    report: PackReport | None,
    resume_from: str | None,
    *,
    pack_dir: Path,
    prune: Prune | None,
    task,
    splits,
    resident,
) -> list[dict | None]:
    """``run_pack`` of one pack that is not split (see there)."""

    problems = pack_problems(cfgs)
    if problems:
        raise ConfigError("trial pack:\n  " + "\n  ".join(problems), problems)
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    pack_dir = Path(pack_dir)
    pack_state = None
    if resume_from is not None:
        pack_state = check_pack_checkpoint(resume_from, len(cfgs))
        if pack_state.get("finished"):
            return pack_state["final"]

    from transformers import set_seed

    cfg0 = cfgs[0]
    if task is None:
        from jola_ray.data import get_task

        task = get_task(cfg0.task)
    if not packable(cfg0.method, task.training):
        raise ConfigError(
            f"trial pack: task {task.name} trains with {task.training}, which runs unpacked "
            "(packs train SFT tasks)"
        )
    if splits is None:
        from jola_ray.train.pipeline import run_splits

        splits = run_splits(cfg0, task, resident)
    from datasets.utils.logging import disable_progress_bar

    disable_progress_bar()
    set_seed(cfg0.seed)
    from jola_ray.train.loading import load_model_and_tokenizer

    if resident is None:
        model, tok, device = load_model_and_tokenizer(cfg0)
    else:
        model, tok, device = resident.base_model(cfg0, load_model_and_tokenizer)
    from jola_ray.methods import registry
    from jola_ray.train import pipeline

    members: list[_Member] = []
    try:
        datasets: dict = {}  # one tokenization for the whole pack
        for k, cfg in enumerate(cfgs):
            ctx = pipeline._Run(
                cfg,
                task,
                splits,
                model,
                tok,
                device,
                Path(cfg.output_dir),
                None,
                CostMeter(device),
                datasets,
            )
            ctx.resident = resident  # the tokenized datasets come from the worker's cache
            stages = registry.get(cfg.method).stages(cfg.method_config)
            members.append(_Member(k, ctx, stages))
        names = {tuple(st.name for st in m.stages) for m in members}
        if len(names) != 1:
            raise ConfigError(f"trial pack: members' recipes differ ({sorted(names)})")
        # As ``run``: the data are fitted (bad data fails) before any folder is written; every
        # member's config.yaml is headed by the sizes and fitting the pack really used.
        pipeline._datasets(members[0].ctx, "sft")
        for m in members:
            m.ctx.fit = members[0].ctx.fit
            m.ctx.out.mkdir(parents=True, exist_ok=True)
            pipeline._write_config(m.ctx, m.ctx.out / "config.yaml")
        pack_dir.mkdir(parents=True, exist_ok=True)
        pack = _Pack(members, pack_dir, report, prune, pack_state, resume_from)
        try:
            return pack.recipe()
        except DataError as err:  # bad data found late: said in every member's folder
            for m in members:
                (m.ctx.out / pipeline.FAILED_FILE).write_text(f"run failed on bad data: {err}\n")
            raise
        except torch.OutOfMemoryError as err:
            k = len(cfgs)
            advice = (
                f"use a smaller pack (pack: {k // 2}), a smaller batch_size or eval_batch_size"
                if k > 1
                else "one configuration alone does not fit: use a smaller batch_size or "
                "eval_batch_size (or max_length)"
            )
            raise PackOutOfMemory(
                f"out of memory in a pack of {k} configuration{'s' if k > 1 else ''} (model "
                f"{cfg0.model}, batch_size {cfg0.batch_size}: {k * cfg0.batch_size} rows per "
                f"step; eval_batch_size {cfg0.eval_batch_size}: up to "
                f"{k * cfg0.eval_batch_size} rows per dev batch); {advice}",
                k,
            ) from err
    finally:
        # what the pack held (edits, states, trainer) must be unreachable before the resident
        # collects it; the kept model stays
        members.clear()
        pack = None  # noqa: F841
        del model
        if resident is not None:
            resident.end_trial()


class _Pack:
    """A pack's recipe: the method's stages, each trained packed, then each member tested."""

    def __init__(self, members, pack_dir, report, prune, pack_state, resume_from):
        self.members = members
        self.pack_dir = pack_dir
        self.report = report
        self.prune = prune
        self.saved = pack_state  # the resumed checkpoint's pack state, or None
        self.resume_from = resume_from
        self.ctx0 = members[0].ctx

    @property
    def model(self):
        return self.ctx0.model

    def recipe(self) -> list[dict | None]:
        from jola_ray.train import pipeline
        from jola_ray.train.resident import base_fingerprint
        from jola_ray.train.trainer import load_trainable_state

        names = [st.name for st in self.members[0].stages]
        start = 0
        if self.saved is not None:
            if self.saved["stage"] not in names:
                raise TrainingError(
                    f"resume_from: {self.resume_from} is a pack checkpoint of stage "
                    f"{self.saved['stage']!r}; the method has stages {', '.join(names)}"
                )
            start = names.index(self.saved["stage"])
            for m in self.members:
                m.state = RunState.load(Path(self.resume_from) / MEMBERS_DIR / str(m.index))
                m.carry = dict(m.state.carry)
                m.pruned_at = self.saved["pruned"].get(str(m.index))
        single = len(names) == 1
        for i, name in enumerate(names):
            if i < start:
                continue
            last = i == len(names) - 1
            packed = self._attach(i)
            before = None if last else base_fingerprint(self.model, packed)
            resumed = self.saved is not None and i == start
            if not resumed:
                for m in self.members:
                    m.state = RunState(stage=name, carry=m.carry)
            stage_dir = self.pack_dir / ("checkpoints" if single else name)
            self._train(packed, i, stage_dir, resumed=resumed, reported=last)
            if last:
                return self._finish(packed)
            for m in self.members:
                stage = m.stages[i]
                with packed.solo(m.index):
                    if m.state.best_state is not None:
                        load_trainable_state(self.model, m.state.best_state)
                    handed_on = stage.finish(m.handle) if stage.finish else {}
                earlier = dict(m.carry.get("metrics", {}))
                cost = dict(m.carry.get("cost", {"steps": 0, "tokens": 0, "wall_s": 0.0}))
                cost["steps"] += int(m.state.history[-1]["step"]) if m.state.history else 0
                cost["tokens"] += m.state.tokens
                cost["wall_s"] += m.state.wall_s
                summary = pipeline._stage_summary(stage, m.state)
                m.carry = {**m.carry, **handed_on, "metrics": {**earlier, **summary}, "cost": cost}
            packed.remove()
            if base_fingerprint(self.model, None) != before:
                raise TrainingError(
                    f"{self.ctx0.cfg.method}: removing the {name} pack did not restore the base"
                )
        raise AssertionError("unreachable: the last stage returns")

    def _attach(self, i: int):
        """Each member's stage-``i`` handle, attached and detached in turn (its init is the
        single run's), then all of them as one ``PackedHeadEdit`` on the model."""
        from jola_ray.editing.base import HeadEdit
        from jola_ray.editing.pack import PackedHeadEdit
        from jola_ray.methods.base import StageContext

        edits = []
        for m in self.members:
            cfg = m.cfg
            ctx = StageContext(
                self.model,
                cfg.method_config,
                cfg.seed,
                m.carry,
                m.ctx.splits.train,
                m.ctx.tokenizer,
            )
            m.handle = m.stages[i].attach(ctx)
            m.handle.remove()
            edit = getattr(m.handle, "edit", None)
            if not isinstance(edit, HeadEdit):
                raise ConfigError(f"method {cfg.method!r} runs unpacked (its edit does not pack)")
            edits.append(edit)
        packed = PackedHeadEdit(edits)
        packed.attach(self.model)
        return packed

    # --- one packed training stage ------------------------------------------------------------
    def _train(self, packed, i: int, stage_dir: Path, *, resumed: bool, reported: bool) -> None:
        from transformers.trainer_callback import PrinterCallback

        from jola_ray.train import pipeline
        from jola_ray.train.schedules import LRSchedule
        from jola_ray.train.trainer import steps_per_epoch

        ctx0 = self.ctx0
        train_ds, dev_ds = pipeline._datasets(ctx0, "sft")
        lrs = []
        for m in self.members:
            stage = m.stages[i]
            lrs.append((stage.lr(m.cfg.method_config) if stage.lr else None) or m.cfg.lr)
        args = pipeline._trainer_args(ctx0, stage_dir, lrs[0], "sft")
        args.num_train_epochs = max(m.cfg.epochs for m in self.members)
        args.max_grad_norm = max(m.cfg.max_grad_norm for m in self.members)
        callback = _PackEpochEnd(self, packed, reported)
        trainer = make_pack_trainer_class()(
            model=self.model,
            args=args,
            train_dataset=train_ds,
            eval_dataset=dev_ds,
            processing_class=ctx0.tokenizer,
            callbacks=[callback],
        )
        trainer.remove_callback(PrinterCallback)
        if len(trainer.train_dataset) == 0:
            from jola_ray.errors import DataError

            raise DataError(
                f"task {ctx0.task.name}: no training example fits max_length {ctx0.cfg.max_length}"
            )
        spe = steps_per_epoch(
            len(trainer.train_dataset), ctx0.cfg.batch_size, ctx0.cfg.grad_accum_steps
        )
        for m, lr in zip(self.members, lrs, strict=True):
            m.schedule = LRSchedule.for_run(m.cfg, spe)
            m.lr0 = lr
            m.penalty_fn = pipeline._penalty_fn(m.handle, spe * m.cfg.epochs)
            m.logs = {"task_loss": [], "penalty": []}
        trainer.pack = packed
        trainer.pack_members = self.members
        callback.trainer = trainer
        resume = self.resume_from if resumed else None
        if resume is not None:
            trainer.load_noise(Path(resume) / NOISE_FILE)
        live = [m.index for m in self.members if not m.done()]
        if not live:
            return  # a resumed pack whose training had already ended
        packed.set_live(live)
        callback.start()
        trainer.train(resume_from_checkpoint=resume)

    # --- the end: each member tested alone ------------------------------------------------------
    def _finish(self, packed) -> list[dict | None]:
        from jola_ray.train import pipeline

        results: dict[int, dict] = {}
        out: list[dict | None] = []
        for m in self.members:
            if m.pruned_at is not None:
                out.append(None)
                continue
            n_params = sum(p.numel() for p in m.handle.parameters())
            with packed.solo(m.index):
                metrics = pipeline._finish(m.ctx, m.handle, m.state, n_params)
            metrics.update(_shared_keys(len(self.members)))
            _rewrite_metrics(m.ctx.out, metrics)
            results[m.index] = metrics
            out.append(metrics)
        packed.remove()
        final = self.pack_dir / "final"
        final.mkdir(parents=True, exist_ok=True)
        (final / PACK_STATE_FILE).write_text(
            json.dumps({"members": len(self.members), "finished": True, "final": out}, indent=1)
        )
        if self.report is not None and results:
            self.report(results, str(final))
        return out


def _shared_keys(size: int) -> dict:
    return {"pack_size": size, "cost_shared": True}


def _rewrite_metrics(out: Path, metrics: dict) -> None:
    """``metrics.json`` with the pack keys, in ``final/`` and the top level (predictions kept)."""
    from jola_ray.train import pipeline

    for directory in (out / pipeline.FINAL_DIR, out):
        (directory / "metrics.json").write_text(json.dumps(metrics, indent=1))


class _PackEpochEnd:
    """Epoch ends of a pack: per member dev metrics, best edit, early stopping; then pruning,
    the stack update, the checkpoint's member states and the report."""

    def __init__(self, pack: _Pack, packed, reported: bool) -> None:
        self.pack = pack
        self.packed = packed
        self.reported = reported
        self.trainer = None
        self.epoch_start = time.time()

    def start(self) -> None:
        self.epoch_start = time.time()

    def on_evaluate(self, state, control) -> None:
        """The epoch's evaluation (the trainer skipped its own loop, ``eval_in_callback``): the
        live members' dev passes together (``_dev_passes``), then each member's row with it
        attached alone (its best edit saved under its own names), then ``epoch_done``.

        Every member's row starts from the global RNG state the trainer left (after its one
        draw in place of the loop's data loader seed), so each draws what its single run's pass
        draws and the pack leaves the state one single run leaves."""
        start = torch.get_rng_state()
        results = self._dev_passes()
        for k in list(self.packed.live):
            torch.set_rng_state(start)
            with self.packed.solo(k):
                self.member_evaluated(self.pack.members[k], state, results[k])
        self.epoch_done(control)

    def _dev_passes(self) -> dict:
        """Each live member's dev ``EvalResult`` from one pass over the dev split for all.

        Members that decode alike (``pipeline.eval_settings``) are evaluated together
        (``evaluate_copies``: each batch runs once per member in one forward, each copy edited
        by its member), so an epoch end costs about one dev pass at K times the rows instead of
        K passes."""
        from jola_ray.evaluation.api import evaluate_copies
        from jola_ray.train import pipeline

        ctx0 = self.pack.ctx0
        live = list(self.packed.live)
        groups: dict[tuple, list[int]] = {}
        for k in live:
            settings = pipeline.eval_settings(self.pack.members[k].cfg)
            groups.setdefault(tuple(sorted(settings.items())), []).append(k)
        out = {}
        for key, ks in groups.items():
            self.packed.set_live(ks)
            try:
                results = evaluate_copies(
                    self.pack.model,
                    ctx0.tokenizer,
                    ctx0.task,
                    ctx0.splits.dev,
                    len(ks),
                    **dict(key),
                )
            finally:
                self.packed.set_live(live)
            out.update(zip(ks, results, strict=True))
        return out

    def member_evaluated(self, m: _Member, state, result) -> None:
        """Member ``m``'s epoch row, with it attached alone (as ``EpochEnd``): the dev metrics
        of its part of the pack's dev pass (``result``) and, where label scoring gives it or
        something reads it (``pipeline.needs_dev_loss``), its dev loss, as its single run
        computes them (``dev_pass.dev_loss``)."""
        from jola_ray.evaluation.dev_pass import dev_loss as loss_of
        from jola_ray.train import pipeline
        from jola_ray.train.epochs import close_epoch, epoch_row

        cfg, ctx = m.cfg, m.ctx
        dev = pipeline.split_metrics(ctx.task, "dev", result, None).metrics_prefixed
        dev_loss = loss_of(
            result,
            ctx.model,
            ctx.tokenizer,
            ctx.task,
            ctx.splits.dev,
            mode=cfg.decoding,
            batch_size=cfg.eval_batch_size,
            need_loss=pipeline.needs_dev_loss(cfg),
            append_eos=cfg.append_eos,
            max_length=cfg.max_length,
        )
        row = epoch_row(
            state,
            train_loss=_mean(m.logs["task_loss"]),
            train_penalty=_mean(m.logs["penalty"], 0.0),
            dev=dev,
            dev_loss=dev_loss,
            edit_metrics=m.handle.epoch_metrics(),
            train_lr=m.lr,
        )
        m.logs = {"task_loss": [], "penalty": []}
        # the member alone (solo): its best edit is kept under its own names
        close_epoch(
            m.state, row, dev_loss, m.schedule, self.trainer, cfg.select_metric, cfg.patience
        )
        m.pending = row

    def epoch_done(self, control) -> None:
        """After every live member's evaluation: share the epoch's seconds, prune, shrink."""
        live = [self.pack.members[k] for k in self.packed.live]
        share = (time.time() - self.epoch_start) / max(1, len(live))
        for m in live:
            m.state.wall_s += share
        if self.pack.prune is not None and self.reported:
            epoch = live[0].pending["epoch"] if live and live[0].pending else 0
            rows = {m.index: m.pending for m in live if m.pending is not None}
            for k in self.pack.prune(epoch, rows) if rows else ():
                self.pack.members[k].pruned_at = epoch
        remaining = [m.index for m in live if not m.done()]
        if remaining:
            self.packed.set_live(remaining)
        else:
            control.should_training_stop = True

    def on_save(self, checkpoint: Path, tokens: int) -> None:
        rows = {}
        for m in self.pack.members:
            if m.pending is None:
                continue
            m.state.tokens = tokens
            m.state.save(checkpoint / MEMBERS_DIR / str(m.index))
            decorated = {**m.pending, **m.carry.get("metrics", {})}
            # the member's share of the pack's seconds so far (earlier stages included)
            earlier = float(m.carry.get("cost", {}).get("wall_s", 0.0))
            decorated["pack_wall_s"] = round(m.state.wall_s + earlier, 3)
            decorated.update(_shared_keys(len(self.pack.members)))
            rows[m.index] = decorated
            m.pending = None
        for m in self.pack.members:  # members that left earlier: their state travels along
            target = checkpoint / MEMBERS_DIR / str(m.index)
            if not target.exists():
                m.state.save(target)
        write_pack_state(
            checkpoint,
            members=len(self.pack.members),
            stage=self.pack.members[0].state.stage,
            live=self.packed.live,
            pruned={m.index: m.pruned_at for m in self.pack.members if m.pruned_at is not None},
            groups=self.trainer._group_member,
        )
        self.trainer.save_noise(checkpoint / NOISE_FILE)
        self.epoch_start = time.time()
        if self.reported and self.pack.report is not None and rows:
            self.pack.report(rows, str(checkpoint))


def _mean(values: list, empty: float = float("nan")) -> float:
    return float(sum(values) / len(values)) if values else empty


def make_pack_trainer_class():
    """``PackTrainerMixin`` over the single run's ``EditTrainerMixin`` + ``SFTTrainer``."""
    from transformers import TrainerCallback
    from trl import SFTTrainer

    from jola_ray.evaluation.answer_loss import answer_nll_rows, supports_answer_nll
    from jola_ray.train.trainer import EditTrainerMixin, with_penalty

    class _Hooks(TrainerCallback):
        """Forwards the Trainer's ``on_evaluate`` (the epoch's end, no evaluation loop run) and
        ``on_save`` (checkpoint on disk) to the pack."""

        def __init__(self, trainer):
            self.trainer = trainer

        def on_evaluate(self, args, state, control, **kwargs):
            self.trainer.pack_callback.on_evaluate(state, control)
            return control

        def on_save(self, args, state, control, **kwargs):
            checkpoint = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            self.trainer.pack_callback.on_save(checkpoint, int(state.num_input_tokens_seen or 0))
            return control

    class PackTrainerMixin:
        pack = None  # PackedHeadEdit
        pack_members: list = []
        # as a single run's SFT trainer: the Trainer's own loop over the dev split is skipped
        # (``EditTrainerMixin.evaluate``), each member's one dev pass runs in ``on_evaluate``
        eval_in_callback = True

        def __init__(self, *a, callbacks=None, **kw):
            self.pack_callback = callbacks[0]
            super().__init__(*a, **kw)
            self.add_callback(_Hooks(self))
            self._group_member: list[int] = []
            self._noise_ready = False
            self._noise_warned = False
            self._after_forward = None  # global RNG state after the latest packed forward

        # the packed step -----------------------------------------------------------------
        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            if not model.training:  # not a training step (no evaluation loop runs here)
                return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
            self._ensure_noise()
            live = list(self.pack.live)
            n = len(live)
            batch = inputs["input_ids"].shape[0]
            stacked = {  # every (B, ...) tensor -> (K'B, ...): member live[i] at rows i*B..
                key: torch.cat([v] * n)
                if torch.is_tensor(v) and v.dim() and v.shape[0] == batch
                else v
                for key, v in inputs.items()
            }
            stacked["use_cache"] = False
            # as the single run (``EditTrainerMixin._answer_only_loss``): the backbone once and
            # the LM head at the answer positions only; TRL's fused head (every position) where
            # the backbone cannot be called alone or the outputs are wanted
            answer_only = not return_outputs and supports_answer_nll(model)
            outputs = None
            self._sync_noise()
            if answer_only:
                extra = {k: stacked[k] for k in ("position_ids",) if k in stacked}
                nll, counts = answer_nll_rows(
                    model,
                    stacked["input_ids"],
                    stacked["labels"],
                    attention_mask=stacked.get("attention_mask"),
                    **extra,
                )  # (K'B,) each
            else:
                outputs = model(**stacked, fused_lm_head=True)
                nll = -outputs.log_probs  # (K'B, T), zero on ignored positions
                counts = outputs.label_mask  # (K'B, T)
            self._after_forward = _global_rng_state(self.pack)
            if nll.shape[0] != n * batch:
                raise TrainingError(
                    f"packed loss: expected {n * batch} rows of log-probs for members {live}, "
                    f"got {tuple(nll.shape)}"
                )
            # each member's block of rows: (K'B, ...) -> (K', B, ...) -> (K',)
            sums = nll.unflatten(0, (n, batch)).flatten(1).sum(dim=1)
            labelled = counts.unflatten(0, (n, batch)).flatten(1).sum(dim=1)
            ga = 1
            if self.loss_is_scaled_for_ga is not False and num_items_in_batch is not None:
                ga = self.current_gradient_accumulation_steps
            step = self.state.global_step
            total = None
            for i, k in enumerate(live):
                m = self.pack_members[k]
                num_tokens = labelled[i] if num_items_in_batch is None else num_items_in_batch
                denom = torch.as_tensor(num_tokens, device=sums.device).clamp(min=1)
                task_loss = sums[i] / denom
                if self.args.average_tokens_across_devices and num_items_in_batch is not None:
                    task_loss = task_loss * (self.accelerator.num_processes // self.get_tp_size())
                loss, penalty_value = with_penalty(
                    task_loss, m.penalty_fn, step, ga, f"pack member {k}, {m.ctx.out}"
                )
                m.logs["task_loss"].append(float(task_loss.detach()) * ga)
                m.logs["penalty"].append(penalty_value)
                m.lr = self._member_lr(k)
                total = loss if total is None else total + loss
            return (total, outputs) if return_outputs else total

        def _member_lr(self, k: int) -> float:
            if self.optimizer is None:
                return float("nan")
            for group, member in zip(self.optimizer.param_groups, self._group_member, strict=True):
                if member == k:
                    return float(group["lr"])
            return float("nan")

        # per member noise ----------------------------------------------------------------
        def _ensure_noise(self):
            """Each member's noise generator starts where the global RNG is at the first step
            (where a single run's gate noise starts)."""
            if self._noise_ready:
                return
            for member in self.pack.members:
                member.noise_generator = _generator_like_global(member)
            self._noise_ready = True

        def _sync_noise(self):
            """Replay on every member's generator the draws the global RNG took since the last
            packed forward (the data loaders' seeds), as a single run's gate noise sees them."""
            if self._after_forward is None:
                return
            now = _global_rng_state(self.pack)
            n = _draws_between(self._after_forward, now)
            if n is None:
                if not self._noise_warned:
                    log.warning(
                        "trial pack: the global RNG moved between steps in a way that cannot be "
                        "replayed; packed gate noise now differs from single runs"
                    )
                    self._noise_warned = True
                return
            scratch = torch.empty((), dtype=torch.int64, device=now.device)
            for member in self.pack.members:
                for _ in range(n):
                    scratch.random_(generator=member.noise_generator)

        def save_noise(self, path: Path) -> None:
            if not self._noise_ready:
                return
            torch.save(
                {
                    "members": [m.noise_generator.get_state() for m in self.pack.members],
                    "after_forward": self._after_forward,
                },
                str(path),
            )

        def load_noise(self, path: Path) -> None:
            if not path.is_file():
                return
            saved = torch.load(str(path), weights_only=True)
            for member, st in zip(self.pack.members, saved["members"], strict=True):
                member.noise_generator = _generator_like_global(member)
                member.noise_generator.set_state(st)
            self._after_forward = saved["after_forward"]
            self._noise_ready = True

        # per member optimisation -----------------------------------------------------------
        def create_optimizer(self, model=None):
            if self.optimizer is None:
                model = self.model if model is None else model
                decay = set(self.get_decay_parameter_names(model))
                cls, kwargs = self.get_optimizer_cls_and_kwargs(self.args, model)
                groups, self._group_member = [], []
                named = list(model.named_parameters())
                for m in self.pack_members:
                    prefix = f"head_edit.members.{m.index}."
                    mine = [(n, p) for n, p in named if n.startswith(prefix) and p.requires_grad]
                    for decayed, wd in ((True, m.cfg.weight_decay), (False, 0.0)):
                        params = [p for n, p in mine if (n in decay) == decayed]
                        if params:
                            groups.append(
                                {
                                    "params": params,
                                    "weight_decay": wd,
                                    "lr": m.lr0,
                                    "eps": m.cfg.adam_epsilon,
                                }
                            )
                            self._group_member.append(m.index)
                self.optimizer = cls(groups, **kwargs)
            return self.optimizer

        def create_scheduler(self, num_training_steps: int, optimizer=None):
            from torch.optim.lr_scheduler import LambdaLR

            if self.lr_scheduler is None:
                lambdas = [self.pack_members[k].schedule for k in self._group_member]
                self.lr_scheduler = LambdaLR(optimizer or self.optimizer, lambdas)
                self._created_lr_scheduler = True
            return self.lr_scheduler

        def _clip_grad_norm(self, model):
            norms = []
            for k in self.pack.live:
                max_norm = self.pack_members[k].cfg.max_grad_norm
                if max_norm > 0:
                    params = self.pack.member_parameters(k)
                    norms.append(torch.nn.utils.clip_grad_norm_(params, max_norm))
            return torch.stack(norms).max() if norms else torch.zeros(())

    return type("PackSFTTrainer", (PackTrainerMixin, EditTrainerMixin, SFTTrainer), {})


def _global_rng_state(pack) -> torch.Tensor:
    """The global RNG state of the device the members' gate noise is drawn on."""
    device = next(pack.parameters()).device
    if device.type == "cuda":
        return torch.cuda.get_rng_state(device)
    return torch.get_rng_state()


def _draws_between(start: torch.Tensor, end: torch.Tensor, limit: int = 256) -> int | None:
    """How many int64 draws (a data loader's seed each) lead from RNG state ``start`` to
    ``end``; None when no count up to ``limit`` does (CPU generators; CUDA: 0 or None)."""
    if torch.equal(start, end):
        return 0
    if start.device.type != "cpu" or start.numel() != end.numel():
        return None
    gen = torch.Generator()
    gen.set_state(start)
    scratch = torch.empty((), dtype=torch.int64)
    for n in range(1, limit + 1):
        scratch.random_(generator=gen)
        if torch.equal(gen.get_state(), end):
            return n
    return None


def _generator_like_global(member) -> torch.Generator:
    """A generator on the member's device holding the global RNG's current state there."""
    device = next(member.parameters()).device
    gen = torch.Generator(device=device)
    if device.type == "cuda":
        gen.set_state(torch.cuda.get_rng_state(device))
    else:
        gen.set_state(torch.get_rng_state())
    return gen
