"""Trial packs: K configurations trained together equal each configuration trained alone.

The reference is the single-configuration path (``jola_ray.train.run``, TRL's trainer with the
global RNG's gate noise); the pack must reproduce every member's per-step losses, per-epoch
rows and final edit (relative tolerance 1e-5, fp32, tiny models), for JoLA and LoFiT.
"""

import json
import math
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from jola_ray.errors import ConfigError, TrainingError
from jola_ray.train import RunConfig, run
from jola_ray.train import pack as pack_mod
from jola_ray.train import trainer as trainer_mod
from jola_ray.train.pack import pack_problems, run_pack

from .conftest import TINY, trainer_args

BASE = {**TINY, "epochs": 3}
# Members differ in what a group's configurations differ in: rate, schedule and its profile,
# early stopping, weight decay, clipping, per-example gate noise, penalty weight.
HPS = [
    {"lr": 5e-3},
    {"lr": 2e-2, "lr_schedule": "cosine", "profile": "reference-code"},
    {"lr": 1e-2, "patience": 1, "weight_decay": 0.1, "max_grad_norm": 0.05},
]
METHOD_HPS = {  # each method's own settings vary too
    "jola": [{}, {"jola.per_example_gates": True}, {"jola.gate_lambda": 0.01}],
    # the gate ablations (one shared gate per head; no gates) and the parts ablations
    "jola_gates": [
        {"jola.gates": "shared"},
        {"jola.gates": "none", "jola.parts": "mul"},
        {"jola.gates": "shared", "jola.parts": "add", "jola.per_example_gates": True},
    ],
    "lofit": [{}, {"lofit.l1_lambda": 5e-3}, {"lofit.stage1_lr": 3e-2, "lofit.top_k": 2}],
}
VOLATILE = {"cost_wall_s", "cost_gpu_s", "cost_peak_mem_gb", "s1_wall_s", "pack_size"}
VOLATILE |= {"cost_shared"}


def _cfgs(tmp_path, prefix, method, hps=None):
    if hps is None:
        hps = [{**h, **own} for h, own in zip(HPS, METHOD_HPS[method], strict=True)]
        method = method.split("_gates")[0]
    return [
        RunConfig.from_dict(
            {**BASE, "method": method, **h, "output_dir": str(tmp_path / f"{prefix}{i}")}
        )
        for i, h in enumerate(hps)
    ]


def _close(a, b, where):
    if isinstance(a, float) and isinstance(b, float):
        if math.isnan(a) and math.isnan(b):
            return
        assert b == pytest.approx(a, rel=1e-5, abs=1e-7), where
    else:
        assert a == b, where


def _same_rows(alone, packed, who):
    assert len(alone) == len(packed), who
    for ra, rb in zip(alone, packed, strict=True):
        # the dev loss where the single run has it (free or read), and nowhere else
        assert ("dev_loss" in rb) == ("dev_loss" in ra), f"{who} epoch {ra['epoch']} dev_loss"
        for key, value in ra.items():
            if key not in VOLATILE:
                _close(value, rb[key], f"{who} epoch {ra['epoch']} {key}")


def _same_finals(finals_a, finals_b, cfgs_a=None, cfgs_b=None):
    """Every member's final metrics (and, given their configs, final edits) equal."""
    for k, (a, b) in enumerate(zip(finals_a, finals_b, strict=True)):
        for key, value in a.items():
            if key not in VOLATILE:
                _close(value, b[key], f"member {k} {key}")
        if cfgs_a is not None:
            who = f"member {k}"
            _same_edit(Path(cfgs_a[k].output_dir), Path(cfgs_b[k].output_dir), who)


def _same_edit(dir_a, dir_b, who):
    a, b = load_file(str(dir_a / "edit.safetensors")), load_file(str(dir_b / "edit.safetensors"))
    assert sorted(a) == sorted(b), who
    for key in a:
        torch.testing.assert_close(b[key], a[key], rtol=1e-5, atol=1e-7, msg=f"{who} {key}")


@pytest.fixture
def step_losses(monkeypatch):
    """Per optimizer step task losses: the single trainer's (one list per run) and each pack
    member's (member -> list), read from what each loss computation logged."""
    record = {"alone": [], "packed": {}}
    original = trainer_mod.EditTrainerMixin.compute_loss

    def alone(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        out = original(self, model, inputs, return_outputs, num_items_in_batch)
        if model.training:
            record["alone"][-1].append(self._metrics["train"]["task_loss"][-1])
        return out

    monkeypatch.setattr(trainer_mod.EditTrainerMixin, "compute_loss", alone)
    make = pack_mod.make_pack_trainer_class

    def make_recording():
        cls = make()

        class Recording(cls):
            def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
                live = list(self.pack.live) if model.training else []
                out = super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
                for k in live:
                    logged = self.pack_members[k].logs["task_loss"][-1]
                    record["packed"].setdefault(k, []).append(logged)
                return out

        return Recording

    monkeypatch.setattr(pack_mod, "make_pack_trainer_class", make_recording)
    return record


def _run_alone(cfgs, record):
    rows = []
    for cfg in cfgs:
        record["alone"].append([])
        reports = []
        run(cfg, report=lambda m, d, reports=reports: reports.append(dict(m)))
        rows.append(reports)
    return rows


def _run_packed(cfgs, tmp_path, **kw):
    rows = {k: [] for k in range(len(cfgs))}

    def report(members, checkpoint_dir):
        for k, metrics in members.items():
            rows[k].append(dict(metrics))

    final = run_pack(cfgs, report=report, pack_dir=tmp_path / "pack", **kw)
    return rows, final


@pytest.mark.parametrize("method", ["jola", "jola_gates", "lofit"])
def test_packed_members_equal_their_single_runs(tmp_path, method, step_losses):
    alone_cfgs = _cfgs(tmp_path, "alone", method)
    packed_cfgs = _cfgs(tmp_path, "packed", method)
    alone = _run_alone(alone_cfgs, step_losses)
    packed, final = _run_packed(packed_cfgs, tmp_path)

    for k in range(len(HPS)):
        who = f"{method} member {k}"
        # per-step losses (LoFiT: stage 1's steps, then stage 2's)
        steps = step_losses["alone"][k]
        assert len(steps) >= 4 and steps == pytest.approx(step_losses["packed"][k], rel=1e-5), who
        _same_rows(alone[k], packed[k][:-1] + [final[k]], who)  # epoch rows, then the final
        _same_edit(Path(alone_cfgs[k].output_dir), Path(packed_cfgs[k].output_dir), who)
        files = {p.name for p in (Path(packed_cfgs[k].output_dir) / "final").iterdir()}
        assert {"metrics.json", "predictions.jsonl", "gates.csv", "edit.safetensors"} <= files
        assert final[k]["pack_size"] == len(HPS) and final[k]["cost_shared"] is True
    if method.startswith("jola"):  # the per-epoch gate statistics, per part and layer
        parts = [("add", "mul"), ("mul",), ("add",)] if method == "jola_gates" else [("add", "mul")]
        for k in range(len(HPS)):
            want = {
                f"open_gate_fraction_{p}_l{layer}"
                for p in parts[k % len(parts)]
                for layer in (0, 1)
            }
            for row in packed[k][:-1]:
                stats = {key for key in row if key.startswith("open_gate_fraction_")}
                assert stats == want | {f"open_gate_fraction_{p}" for p in parts[k % len(parts)]}
                assert stats <= set(alone[k][0]), f"member {k}: the single run's records"
    # the members really differ (not one configuration three times) and one stopped early
    assert len({round(f["train_loss"], 6) for f in final}) == len(HPS)
    assert len(alone[2]) < len(alone[0])


def test_members_see_the_same_examples_in_the_same_order_and_the_stack_shrinks(tmp_path):
    """Every packed forward's K slices are one batch, the single run's batch of that step; a
    member that stops early leaves the stack (the forward gets B rows smaller)."""
    seen = {"alone": [], "packed": []}

    def recorder(key):
        def hook(module, args, kwargs):
            if module.training:
                seen[key].append(kwargs["input_ids"].clone())

        return hook

    from jola_ray.train import loading

    original = loading.load_model_and_tokenizer
    key = {"now": "alone"}

    def load(cfg):
        model, tok, device = original(cfg)
        model.register_forward_pre_hook(recorder(key["now"]), with_kwargs=True)
        return model, tok, device

    mp = pytest.MonkeyPatch()
    mp.setattr(loading, "load_model_and_tokenizer", load)
    try:
        run(_cfgs(tmp_path, "alone", "jola")[0])
        key["now"] = "packed"
        run_pack(_cfgs(tmp_path, "packed", "jola"), pack_dir=tmp_path / "pack")
    finally:
        mp.undo()
    batch = BASE["batch_size"]
    alone, packed = seen["alone"], seen["packed"]
    assert len(packed) == len(alone)  # member 0 trains every epoch: one forward per step
    rows = [p.shape[0] for p in packed]
    assert rows[0] == 3 * batch and rows[-1] == 2 * batch  # member 2 stopped (patience 1)
    for single, stacked in zip(alone, packed, strict=True):
        for s in stacked.split(batch):
            assert torch.equal(s, single)
    assert len({tuple(b.flatten().tolist()) for b in alone}) > 1  # batches change step to step


def test_a_killed_pack_resumes_to_the_same_results(tmp_path):
    cfgs = _cfgs(tmp_path, "whole", "jola")
    _, whole = _run_packed(cfgs, tmp_path / "a")

    checkpoints = []

    def dying(members, checkpoint_dir):
        checkpoints.append(checkpoint_dir)
        if len(checkpoints) == 2:
            raise RuntimeError("simulated preemption")

    cut = _cfgs(tmp_path, "cut", "jola")
    with pytest.raises(RuntimeError, match="preemption"):
        run_pack(cut, report=dying, pack_dir=tmp_path / "b")
    assert json.loads((Path(checkpoints[-1]) / "pack_state.json").read_text())["live"]
    resumed = run_pack(cut, resume_from=checkpoints[-1], pack_dir=tmp_path / "b")
    _same_finals(whole, resumed, cfgs, cut)


def test_pruned_members_leave_the_stack_without_a_test(tmp_path):
    decisions = []

    def prune(epoch, rows):
        decisions.append((epoch, sorted(rows)))
        return {1} if epoch == 1 else set()

    rows, final = _run_packed(_cfgs(tmp_path, "p", "jola"), tmp_path, prune=prune)
    assert decisions[0] == (1, [0, 1, 2])  # every live member's row reaches the rung
    assert final[1] is None and final[0]["run_status"] == "finished"
    assert [r["epoch"] for r in rows[1]] == [1]  # pruned after its first epoch
    assert not (tmp_path / "p1" / "final").exists()


def test_members_that_cannot_share_a_pack_are_refused(tmp_path):
    cfgs = _cfgs(tmp_path, "x", "jola")
    cfgs[1] = RunConfig.from_dict({**BASE, "batch_size": 2, "output_dir": str(tmp_path / "y")})
    problems = pack_problems(cfgs)
    assert any(p.startswith("batch_size") for p in problems)
    with pytest.raises(ConfigError, match="batch_size"):
        run_pack(cfgs, pack_dir=tmp_path / "pack")
    zero = _cfgs(tmp_path, "z", "zero_shot", hps=[{}, {}])
    assert any("runs unpacked" in p for p in pack_problems(zero))
    ffn = _cfgs(tmp_path, "f", "jola", hps=[{}, {"jola.site": "ffn"}])
    assert pack_problems(ffn) == ["jola.site 'ffn' runs unpacked (only jola.site 'heads' packs)"]
    with pytest.raises(ConfigError, match="jola.site 'ffn' runs unpacked"):
        run_pack(ffn, pack_dir=tmp_path / "pack")


def test_out_of_memory_names_the_pack_size(tmp_path, caplog):
    """Out of memory at every checkpoint: the pack halves down to single configurations, each
    split said with its sizes and the checkpoint it continues from, and the end names the
    rows that did not fit and the settings to lower."""

    def oom(members, checkpoint_dir):
        raise torch.OutOfMemoryError("CUDA out of memory (simulated)")

    with pytest.raises(TrainingError, match=r"pack of 1 configuration .*rows per dev batch.*"
                       r"one configuration alone does not fit.*batch_size"):  # fmt: skip
        run_pack(_cfgs(tmp_path, "o", "jola"), report=oom, pack_dir=tmp_path / "pack")
    said = [r.getMessage() for r in caplog.records if "did not fit" in r.getMessage()]
    assert said[0].startswith(
        "trial pack of 3 configurations did not fit in memory; splitting it into packs of 2 "
        "and 1, which continue from its checkpoint"
    )
    assert "out of memory in a pack of 3 configurations" in said[0] and "pack: 1" in said[0]
    assert said[1].startswith("trial pack of 2 configurations did not fit")


@pytest.mark.parametrize("n_items", ["step", None])  # None: each member's own label count
def test_the_packed_step_scores_answer_positions_only_with_the_fused_losses_and_gradients(
    tmp_path, n_items
):
    """The packed trainer's training loss: one backbone forward over the stacked batch, the LM
    head at the answer positions alone (rows counted by a hook on it), and per member the
    loss and gradients of TRL's fused head over every position (the fallback path, taken when
    a hook on the model itself rules the backbone call out)."""
    from collections import defaultdict
    from types import SimpleNamespace

    from jola_ray.data.demo import demo_pools
    from jola_ray.editing import JoLAConfig
    from jola_ray.editing.pack import build_pack
    from jola_ray.tiny import build_tiny
    from jola_ray.train.trl_data import sft_dataset

    model, tok = build_tiny("llama", seed=0)
    configs = [JoLAConfig(seed=0), JoLAConfig(seed=1, per_example_gates=True, init_std=0.05)]
    pack = build_pack(model, configs)
    ds = sft_dataset(demo_pools("demo_vowel").train[:4], tok, append_eos=True)
    args = trainer_args(tmp_path, completion_only_loss=True)
    trainer = pack_mod.make_pack_trainer_class()(
        model=model, args=args, train_dataset=ds, processing_class=tok, callbacks=[None]
    )
    trainer.pack = pack
    trainer.pack_members = [
        SimpleNamespace(
            index=k, penalty_fn=None, ctx=SimpleNamespace(out=f"m{k}"), logs=None, lr=None
        )
        for k in range(len(configs))
    ]
    trainer.current_gradient_accumulation_steps = 1
    trainer.state = SimpleNamespace(global_step=0, epoch=0.0)
    trainer._metrics = {"train": defaultdict(list), "eval": defaultdict(list)}
    batch = trainer.data_collator([ds[i] for i in range(len(ds))])
    labelled = int((batch["labels"][:, 1:] != -100).sum())
    head_rows = []
    model.get_output_embeddings().register_forward_hook(
        lambda module, args, out: head_rows.append(tuple(args[0].shape))
    )
    model.train()

    def step():
        """(total loss, each member's logged task loss, each member's gradients)."""
        for k, m in enumerate(trainer.pack_members):
            m.logs = {"task_loss": [], "penalty": []}
            pack.members[k].noise_generator = torch.Generator().manual_seed(10 + k)
        trainer._noise_ready, trainer._after_forward = True, None
        model.zero_grad(set_to_none=True)
        num = labelled if n_items == "step" else None
        loss = trainer.compute_loss(model, dict(batch), num_items_in_batch=num)
        loss.backward()
        grads = [[p.grad.clone() for p in pack.member_parameters(k)] for k in range(2)]
        return loss.detach(), [m.logs["task_loss"][0] for m in trainer.pack_members], grads

    loss_a, members_a, grads_a = step()
    assert head_rows == [(2 * labelled, model.config.hidden_size)]  # answer positions only
    fused = []  # a hook on the model: the backbone cannot be called alone, TRL's fused head
    hook = model.register_forward_pre_hook(
        lambda module, args, kwargs: fused.append(kwargs.get("fused_lm_head")), with_kwargs=True
    )
    loss_f, members_f, grads_f = step()
    hook.remove()
    assert fused == [True]
    assert loss_a.item() == pytest.approx(loss_f.item(), rel=1e-5)
    assert members_a == pytest.approx(members_f, rel=1e-5)
    assert members_a[0] != pytest.approx(members_a[1], rel=1e-3)  # the members really differ
    for k in range(2):
        assert any(g.abs().sum() > 0 for g in grads_f[k])
        for ga, gf in zip(grads_a[k], grads_f[k], strict=True):
            torch.testing.assert_close(ga, gf, rtol=1e-4, atol=1e-7, msg=f"member {k}")


def test_a_pack_runs_no_evaluation_loop_and_has_dev_loss_where_its_single_runs_do(
    tmp_path, monkeypatch, step_losses
):
    """As a single run's SFT trainer, the pack skips the Trainer's evaluation loop: each member's
    epoch row comes from its one dev pass, with ``dev_loss`` (equal to its single run's) only
    when something reads it (greedy decoding: the loss is not free)."""
    import transformers

    loops = []

    def no_loop(self, *args, **kwargs):
        loops.append(type(self).__name__)
        raise AssertionError("the Trainer's evaluation loop ran")

    monkeypatch.setattr(transformers.Trainer, "evaluation_loop", no_loop)
    hps = [
        {"lr": 5e-3},
        {"lr": 2e-2, "select_metric": "dev_loss", "patience": 1},
        {"lr": 1e-2, "record_dev_loss": True},
        {"lr": 5e-2, "lr_schedule": "adaptive"},  # its schedule reads the dev loss
    ]
    alone = _run_alone(_cfgs(tmp_path, "alone", "jola", hps), step_losses)
    packed, final = _run_packed(_cfgs(tmp_path, "packed", "jola", hps), tmp_path)
    assert loops == []
    for k in range(len(hps)):
        _same_rows(alone[k], packed[k][:-1] + [final[k]], f"member {k}")
        assert step_losses["alone"][k] == pytest.approx(step_losses["packed"][k], rel=1e-5)
    assert all("dev_loss" not in row for row in packed[0])
    for k in (1, 2, 3):
        losses = [row["dev_loss"] for row in packed[k][:-1]]
        assert losses == pytest.approx([row["dev_loss"] for row in alone[k][:-1]], rel=1e-5)
        assert all(math.isfinite(v) for v in losses), f"member {k}"
    assert final[1]["best_epoch"] == alone[1][-1]["best_epoch"]  # selected by the dev loss


@pytest.fixture
def fits_two(monkeypatch):
    """A device on which a pack's stacked forward fits at most two configurations: more live
    members raise the out-of-memory error a CUDA device would."""
    from jola_ray.editing.pack import PackedHeadEdit

    original = PackedHeadEdit.edit_stacked
    sizes = []

    def limited(self, layer, z):
        sizes.append(len(self.live))
        if len(self.live) > 2:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return original(self, layer, z)

    monkeypatch.setattr(PackedHeadEdit, "edit_stacked", limited)
    return sizes


def test_a_pack_that_does_not_fit_splits_itself_with_the_same_results(tmp_path, fits_two):
    """Three configurations where two fit: the pack runs as packs of two and one, reports every
    member under its own index, and each member's results equal the unsplit pack's."""
    cfgs = _cfgs(tmp_path, "split", "jola")
    rows = {k: [] for k in range(3)}
    final = run_pack(
        cfgs,
        report=lambda members, d: [rows[k].append(dict(m)) for k, m in members.items()],
        pack_dir=tmp_path / "split",
    )
    assert max(fits_two) == 3 and set(fits_two[1:]) <= {1, 2}  # tried once whole, then split
    assert sorted(p.name for p in (tmp_path / "split").iterdir()) == ["part-0", "part-1"]
    assert [m["pack_size"] for m in final] == [2, 2, 1]
    fits_two.clear()
    whole_cfgs = _cfgs(tmp_path, "whole", "jola")
    alone = [run(c) for c in whole_cfgs]  # single runs: no packed forward, no limit
    _same_finals(alone, final)
    assert all(rows[k] and rows[k][-1]["run_status"] == "finished" for k in rows)


def test_a_split_pack_resumes_in_the_part_it_was_in(tmp_path, fits_two):
    cfgs = _cfgs(tmp_path, "a", "jola")
    whole = run_pack(cfgs, pack_dir=tmp_path / "pa")
    checkpoints = []

    def dying(members, checkpoint_dir):
        checkpoints.append(checkpoint_dir)
        if sorted(members) == [2]:  # the second part's first checkpoint
            raise RuntimeError("simulated preemption")

    cut = _cfgs(tmp_path, "b", "jola")
    with pytest.raises(RuntimeError, match="preemption"):
        run_pack(cut, report=dying, pack_dir=tmp_path / "pb")
    split = json.loads((Path(checkpoints[-1]) / "split.json").read_text())
    assert split["parts"] == [[0, 1], [2]] and split["part"] == 1
    assert sorted(split["results"]) == ["0", "1"]
    resumed = run_pack(cut, resume_from=checkpoints[-1], pack_dir=tmp_path / "pb")
    _same_finals(whole, resumed, cfgs, cut)


@pytest.fixture
def fits_two_from_epoch_two(monkeypatch):
    """A device on which three configurations train in epoch 1 but not after (a longer batch
    later, as on a real GPU): a training forward of more than two live members after the
    first epoch's steps raises the out-of-memory error a CUDA device would."""
    from jola_ray.editing.pack import PackedHeadEdit

    original = PackedHeadEdit.edit_stacked
    layers = []  # the layers of the first training forward: one entry per layer and forward
    # "fits": training forwards of more than two members that fit (LoFiT: its first stage and
    # the first epoch of its second)
    seen = {"forwards": 0, "sizes": [], "fits": BASE["train_size"] // BASE["batch_size"]}

    def limited(self, layer, z):
        if torch.is_grad_enabled():  # a training forward (dev passes run without gradients)
            if not layers or layer == layers[0]:
                seen["forwards"] += 1
            if len(layers) < len(self._sites) and layer not in layers:
                layers.append(layer)
            seen["sizes"].append(len(self.live))
            if len(self.live) > 2 and seen["forwards"] > seen["fits"]:
                raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return original(self, layer, z)

    monkeypatch.setattr(PackedHeadEdit, "edit_stacked", limited)
    return seen


@pytest.mark.parametrize("method", ["jola", "lofit"])
def test_a_pack_out_of_memory_after_a_checkpoint_continues_from_it_in_parts(
    tmp_path, fits_two_from_epoch_two, method
):
    """Three configurations fit in epoch 1 only (LoFiT: of its second stage): the pack splits
    at epoch 2 into packs of two and one that continue from the epoch-1 checkpoint (epoch 1 is
    not trained again: every member reports each epoch once), and every member ends as its
    single run."""
    spe = BASE["train_size"] // BASE["batch_size"]
    if method == "lofit":  # the first stage's epochs, then the second stage's first
        fits_two_from_epoch_two["fits"] = BASE["epochs"] * spe + spe
    cfgs = _cfgs(tmp_path, "late", method)
    rows = {k: [] for k in range(3)}
    checkpoints = []

    def report(members, checkpoint_dir):
        checkpoints.append((sorted(members), checkpoint_dir))
        for k, m in members.items():
            rows[k].append(dict(m))

    final = run_pack(cfgs, report=report, pack_dir=tmp_path / "late")
    assert max(fits_two_from_epoch_two["sizes"]) == 3  # epoch 1 ran whole
    assert [m["pack_size"] for m in final] == [2, 2, 1]
    assert checkpoints[0][0] == [0, 1, 2]  # epoch 1's checkpoint, of the whole pack
    for k in range(3):
        epochs = [r["epoch"] for r in rows[k] if r["run_status"] == "running"]
        assert epochs == sorted(set(epochs)) and epochs[0] == 1, (k, epochs)
        assert rows[k][-1]["run_status"] == "finished"
    fits_two_from_epoch_two["forwards"] = -(10**6)  # no limit for the references
    alone = [run(c) for c in _cfgs(tmp_path, "ref", method)]
    _same_finals(alone, final)
    for k in range(3):  # and its epoch rows: those of its single run, epoch for epoch
        ref_rows = []
        run(
            _cfgs(tmp_path, f"rows{k}", method)[k],
            report=lambda m, d, out=ref_rows: out.append(dict(m)),
        )
        _same_rows(ref_rows, rows[k], f"member {k}")


def test_a_pack_split_after_a_checkpoint_resumes_its_later_part(tmp_path, fits_two_from_epoch_two):
    """Killed right after the first part's last report (its final files): the resumed pack
    takes the second part's start from that checkpoint (the split carries it) and ends with
    the same results as the pack that was not killed."""
    fits_two_from_epoch_two["forwards"] = -(10**6)  # the reference: no limit, not split
    whole = run_pack(_cfgs(tmp_path, "w", "jola"), pack_dir=tmp_path / "pw")
    fits_two_from_epoch_two["forwards"] = 0
    last = []

    def dying(members, checkpoint_dir):
        last.append(checkpoint_dir)
        if sorted(members) == [0, 1] and all(
            m["run_status"] == "finished" for m in members.values()
        ):
            raise RuntimeError("simulated preemption")

    cut = _cfgs(tmp_path, "k", "jola")
    with pytest.raises(RuntimeError, match="preemption"):
        run_pack(cut, report=dying, pack_dir=tmp_path / "pk")
    split = json.loads((Path(last[-1]) / "split.json").read_text())
    assert split["parts"] == [[0, 1], [2]] and split["part"] == 0
    assert split["starts"][1] and (Path(last[-1]) / "split_starts" / split["starts"][1]).is_dir()
    restored = tmp_path / "restored"  # as Ray hands a checkpoint back: a copy elsewhere
    shutil.copytree(last[-1], restored)
    shutil.rmtree(tmp_path / "pk")  # nothing local survives (another node)
    fits_two_from_epoch_two["forwards"] = 0
    resumed = run_pack(cut, resume_from=str(restored), pack_dir=tmp_path / "pk")
    _same_finals(whole, resumed, _cfgs(tmp_path, "w", "jola"), cut)


def test_a_pack_checkpoint_cut_to_some_members_holds_exactly_theirs(tmp_path):
    """``subset_checkpoint``: the kept members' parameters, optimizer groups and states,
    schedule entries, noise and member states, renumbered; the Trainer's files as they were."""
    from jola_ray.train.pack_split import subset_checkpoint

    cfgs = _cfgs(tmp_path, "s", "jola")
    copies = []

    def keep_first(members, checkpoint_dir):
        if not copies:
            copies.append(Path(shutil.copytree(checkpoint_dir, tmp_path / "ck")))

    run_pack(cfgs, report=keep_first, pack_dir=tmp_path / "ps")
    src = copies[0]
    dest = subset_checkpoint(src, [0, 2], tmp_path / "cut")
    a, b = (
        load_file(str(src / "edit_params.safetensors")),
        load_file(str(dest / "edit_params.safetensors")),
    )
    assert sorted(b) == sorted(k for k in a if ".members.0." in k or ".members.1." in k)
    for key in b:
        old = key.replace(".members.1.", ".members.2.")
        assert torch.equal(b[key], a[old]), key
    oa, ob = (torch.load(str(d / "optimizer.pt"), weights_only=True) for d in (src, dest))
    state = json.loads((src / "pack_state.json").read_text())
    kept = [g for g, k in enumerate(state["groups"]) if k in (0, 2)]
    assert [g["lr"] for g in ob["param_groups"]] == [oa["param_groups"][g]["lr"] for g in kept]
    old_ids = [p for g in kept for p in oa["param_groups"][g]["params"]]
    assert [p for g in ob["param_groups"] for p in g["params"]] == list(range(len(old_ids)))
    for new, old in enumerate(old_ids):
        torch.testing.assert_close(ob["state"][new]["exp_avg"], oa["state"][old]["exp_avg"])
    sa, sb = (torch.load(str(d / "scheduler.pt"), weights_only=True) for d in (src, dest))
    assert sb["base_lrs"] == [sa["base_lrs"][g] for g in kept]
    na, nb = (torch.load(str(d / "noise_rng.pt"), weights_only=True) for d in (src, dest))
    assert torch.equal(nb["members"][1], na["members"][2])
    for j, k in ((0, 0), (1, 2)):
        assert (dest / "members" / str(j) / "run_state.json").read_text() == (
            src / "members" / str(k) / "run_state.json"
        ).read_text()
    assert (dest / "trainer_state.json").read_text() == (src / "trainer_state.json").read_text()
    cut_state = json.loads((dest / "pack_state.json").read_text())
    assert cut_state["members"] == 2 and cut_state["live"] == [0, 1]


def test_a_pack_of_one_that_does_not_fit_says_so(tmp_path, monkeypatch):
    from jola_ray.editing.pack import PackedHeadEdit

    def never(self, layer, z):
        raise torch.OutOfMemoryError("CUDA out of memory (simulated)")

    monkeypatch.setattr(PackedHeadEdit, "edit_stacked", never)
    with pytest.raises(TrainingError, match=r"pack of 1 configuration .*alone does not fit"):
        run_pack(_cfgs(tmp_path, "n", "jola"), pack_dir=tmp_path / "pn")
