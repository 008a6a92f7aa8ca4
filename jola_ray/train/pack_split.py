"""A trial pack that does not fit: its parts, where each part starts, and a pack checkpoint cut
down to some of its members.

``run_pack`` trains a pack's configurations as one part; when a part runs out of memory it is
halved (``Split.halve``), and the halves run one after the other. A part that fails before its
first checkpoint starts its halves from scratch (nothing was trained yet). A part that fails
later starts each half from the part's newest checkpoint, cut down to the half's members
(``subset_checkpoint``), so the epochs already trained are kept: each member continues from
exactly the state it had, and ends with the results it would have had unsplit (the forward of
each member's slice does not depend on the other slices).

The split travels with every checkpoint a part reports (``split.json``: the parts, the one
running, the finished parts' results, and the start of every part still to come, copied into
``split_starts/<name>``), so a retried or restored pack continues the part it was in and the
later parts still find their starts.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from jola_ray.errors import CheckpointError, TrainingError
from jola_ray.train.state import read_json

# a pack checkpoint's own files (jola_ray.train.pack writes them)
PACK_STATE_FILE = "pack_state.json"  # the members, the stage, which are live or were pruned
NOISE_FILE = "noise_rng.pt"  # each member's gate-noise generator
MEMBERS_DIR = "members"  # members/<k>/: each member's run state and best edit
SPLIT_FILE = "split.json"  # in a split pack's checkpoints: its parts and the finished results
STARTS_DIR = "split_starts"  # in a split pack's checkpoints: the starts of the parts to come
EDIT_FILE = "edit_params.safetensors"
OPTIMIZER_FILE = "optimizer.pt"
SCHEDULER_FILE = "scheduler.pt"
_MEMBER_PARAM = re.compile(r"^(head_edit\.members\.)(\d+)(\..+)$")


@dataclass
class Split:
    """The parts of a pack (member indices of the whole pack), the one running, the finished
    parts' final metrics, and each part's start (a checkpoint directory, or None: scratch)."""

    parts: list[list[int]]
    current: int = 0
    results: dict[int, dict | None] = field(default_factory=dict)
    starts: list[str | None] = field(default_factory=list)

    @classmethod
    def whole(cls, size: int) -> Split:
        return cls([list(range(size))], starts=[None])

    @classmethod
    def resumed(cls, checkpoint: str | Path, size: int, start_dir: Path) -> Split:
        """The split a checkpoint carries (the whole pack when it carries none); the starts of
        the parts to come are copied out of it into ``start_dir`` (the checkpoint may be a
        restored copy that goes away)."""
        checkpoint = Path(checkpoint)
        path = checkpoint / SPLIT_FILE
        if not path.is_file():
            return cls.whole(size)
        raw = read_json(path)
        parts = [list(p) for p in raw["parts"]]
        starts: list[str | None] = []
        for i, name in enumerate(raw.get("starts") or [None] * len(parts)):
            if name is None or i <= raw["part"]:
                starts.append(None)  # scratch, or the part's own checkpoint supersedes it
                continue
            source = checkpoint / STARTS_DIR / name
            if not (source / PACK_STATE_FILE).is_file():
                raise CheckpointError(
                    f"{checkpoint}: the start of pack part {i} ({STARTS_DIR}/{name}) is missing",
                    str(source),
                )
            target = start_dir / name
            shutil.rmtree(target, ignore_errors=True)
            shutil.copytree(source, target)
            starts.append(str(target))
        results = {int(k): v for k, v in raw["results"].items()}
        return cls(parts, raw["part"], results, starts)

    @property
    def part(self) -> list[int]:
        return self.parts[self.current]

    def halve(self, start_dir: Path, source: str | Path | None) -> tuple[int, int]:
        """Replace the running part by its two halves; each starts from ``source`` (the part's
        newest checkpoint) cut down to its members, or from scratch when ``source`` is None.
        Returns the halves' sizes."""
        part = self.part
        half = (len(part) + 1) // 2
        halves = [part[:half], part[half:]]
        starts: list[str | None] = [None, None]
        if source is not None:
            for j, members in enumerate(halves):
                name = "m" + "_".join(map(str, members))
                target = start_dir / name
                shutil.rmtree(target, ignore_errors=True)
                keep = [part.index(k) for k in members]  # positions in the running part's pack
                subset_checkpoint(Path(source), keep, target)
                starts[j] = str(target)
        c = self.current
        self.parts[c : c + 1] = halves
        self.starts[c : c + 1] = starts
        return len(halves[0]), len(halves[1])

    def advance(self, finals: Sequence[dict | None]) -> None:
        """The running part finished with ``finals``; the next part runs."""
        self.results.update(zip(self.part, finals, strict=True))
        self.current += 1

    def write(self, checkpoint: str | Path) -> None:
        """Put the split into a part's checkpoint: ``split.json`` and the starts of the parts
        still to come."""
        checkpoint = Path(checkpoint)
        names = []
        for i, start in enumerate(self.starts):
            if start is None or i <= self.current:
                names.append(None)
                continue
            names.append(Path(start).name)
            target = checkpoint / STARTS_DIR / Path(start).name
            if not target.exists():
                shutil.copytree(start, target)
        raw = {"parts": self.parts, "part": self.current, "results": self.results, "starts": names}
        (checkpoint / SPLIT_FILE).write_text(json.dumps(raw, indent=1))


def subset_checkpoint(src: Path, keep: Sequence[int], dest: Path) -> Path:
    """A checkpoint of the pack of members ``keep`` (their positions in ``src``'s pack, in
    order; they become members 0..len(keep)-1) from the pack checkpoint ``src``, written to
    ``dest``: the edit parameters, the optimizer's parameter groups and states, the learning-rate
    schedule's per-group entries, the noise generators and the member states of those members;
    the Trainer's RNG state, step and log as they are (the members trained the same steps).

    Raises:
        CheckpointError: a file of ``src`` is missing or unreadable.
        TrainingError: ``src`` cannot be cut down (a parameter or optimizer group that belongs
            to no member).
    """
    from safetensors.torch import load_file, save_file

    try:
        state = read_json(src / PACK_STATE_FILE)
        size = int(state["members"])
        params = load_file(str(src / EDIT_FILE))
        optimizer = torch.load(str(src / OPTIMIZER_FILE), weights_only=True)
        scheduler = torch.load(str(src / SCHEDULER_FILE), weights_only=True)
    except (OSError, ValueError, KeyError, RuntimeError) as err:
        raise CheckpointError(
            f"{src}: cannot read the pack checkpoint to split it ({err})", str(src)
        ) from None
    position = {k: j for j, k in enumerate(keep)}
    # the member of each optimizer group (one or two groups per member, in member order)
    groups = state.get("groups") or list(range(size))
    if len(groups) != len(optimizer["param_groups"]):
        raise TrainingError(
            f"{src}: {len(optimizer['param_groups'])} optimizer groups for {len(groups)} "
            "recorded; the pack checkpoint cannot be split"
        )
    dest.mkdir(parents=True)

    edit = {}
    for name, tensor in params.items():
        match = _MEMBER_PARAM.match(name)
        if match is None:
            raise TrainingError(f"{src}: parameter {name} belongs to no pack member")
        k = int(match.group(2))
        if k in position:
            edit[f"{match.group(1)}{position[k]}{match.group(3)}"] = tensor
    save_file(edit, str(dest / EDIT_FILE))

    kept = [g for g, k in enumerate(groups) if k in position]
    new_groups, new_state, next_id = [], {}, 0
    for g in kept:
        group = optimizer["param_groups"][g]
        ids = []
        for pid in group["params"]:
            if pid in optimizer["state"]:
                new_state[next_id] = optimizer["state"][pid]
            ids.append(next_id)
            next_id += 1
        new_groups.append({**group, "params": ids})
    torch.save({"state": new_state, "param_groups": new_groups}, str(dest / OPTIMIZER_FILE))

    # LambdaLR's per-group lists (base rates, last rates, each schedule's state)
    for key, value in list(scheduler.items()):
        if isinstance(value, list) and len(value) == len(groups):
            scheduler[key] = [value[g] for g in kept]
    torch.save(scheduler, str(dest / SCHEDULER_FILE))

    if (src / NOISE_FILE).is_file():
        noise = torch.load(str(src / NOISE_FILE), weights_only=True)
        noise["members"] = [noise["members"][k] for k in keep]
        torch.save(noise, str(dest / NOISE_FILE))
    done = {PACK_STATE_FILE, EDIT_FILE, OPTIMIZER_FILE, SCHEDULER_FILE, NOISE_FILE, SPLIT_FILE}
    for path in src.iterdir():  # the Trainer's RNG, state and whatever else it saved
        if path.is_file() and path.name not in done:
            shutil.copy2(path, dest / path.name)
    for k, j in position.items():
        shutil.copytree(src / MEMBERS_DIR / str(k), dest / MEMBERS_DIR / str(j))
    pruned = state.get("pruned", {})
    write_pack_state(
        dest,
        members=len(keep),
        stage=state["stage"],
        live=[position[k] for k in state.get("live", []) if k in position],
        pruned={position[int(k)]: v for k, v in pruned.items() if int(k) in position},
        groups=[position[groups[g]] for g in kept],
    )
    return dest


def write_pack_state(
    checkpoint: Path, *, members: int, stage: str, live, pruned: dict, groups
) -> None:
    """``pack_state.json`` of an unfinished pack checkpoint: its size, the stage, the members in
    the stack, those pruned (member -> epoch), and the member of each optimizer group (a split
    cuts the optimizer by it)."""
    state = {
        "members": members,
        "stage": stage,
        "live": list(live),
        "pruned": {str(k): epoch for k, epoch in pruned.items()},
        "groups": list(groups),
        "finished": False,
    }
    (checkpoint / PACK_STATE_FILE).write_text(json.dumps(state, indent=1))
