"""Local file sources: a data directory -> the task's pools.

Layouts (the directory may be the task's own folder or a root holding it; see docs/data.md):

* commonsense / MMLU-Pro / GEM: ``train.json``, ``test.json`` and optionally ``valid.json``
  (or ``val.json``/``dev.json``; each also as ``.jsonl``), either a JSON list (LLM-Adapters) or
  JSON lines (JoLA), rows with ``instruction`` and ``answer`` (``input`` appended when not
  empty, optional ``id``, GEM optional ``references``). Folder names looked up under a root:
  the LLM-Adapters name (``ARC-Challenge``, ``boolq``...), also under ``commonsense/``, or the
  task name.
* TruthfulQA: ``fold_{k}_{train,val,test}_seed_42.csv`` (ITI/LoFiT CSV), folder ``truthfulqa``
  or ``lofit/truthfulqa``.
* CLUTRR: ``{train,val,test}.json`` (JSON lists, LoFiT), folder ``clutrr`` or ``lofit/clutrr``.
* MQuAKE: ``{train,val,test}.jsonl`` (LoFiT), folder ``mquake`` or ``lofit/mquake``.
* custom: ``train.jsonl``, ``test.jsonl``, optional ``dev.jsonl``; or one ``.jsonl`` file (or a
  folder's ``data.jsonl``) whose rows carry ``split`` (``train``/``dev``/``test``).
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

from jola_ray.data import formats
from jola_ray.data.files import read_records, read_text
from jola_ray.data.sampling import ALL_SPLITS, Pools
from jola_ray.data.task import Example, Task, build_prompt
from jola_ray.errors import DataError

_DEV_NAMES = ("valid", "val", "dev")
_SPLIT_ALIASES = {
    "train": "train",
    "dev": "dev",
    "valid": "dev",
    "validation": "dev",
    "val": "dev",
    "test": "test",
}


def _child(parent: Path, name: str) -> Path:
    """``parent/name``, or the one child whose name equals ``name`` ignoring case."""
    exact = parent / name
    if exact.exists() or not parent.is_dir():
        return exact
    matches = [c for c in parent.iterdir() if c.name.lower() == name.lower()]
    return matches[0] if len(matches) == 1 else exact


def resolve_folder(root: Path, relative: str) -> Path:
    """``root/relative`` with each component matched case-insensitively where it is not exact."""
    path = root
    for part in Path(relative).parts:
        path = _child(path, part)
    return path


def _find(root: Path, names: tuple[str, ...]) -> Path | None:
    for name in names:
        for suffix in (".json", ".jsonl"):
            path = _child(root, f"{name}{suffix}")
            if path.is_file():
                return path
    return None


def _locate(data_dir: Path, subdirs: list[str], marker: str, expected: str) -> Path:
    """The first of ``data_dir`` and ``data_dir/<subdir>`` (folder names matched ignoring case)
    holding a file that matches ``marker`` (a glob, also matched ignoring case)."""
    if not data_dir.exists():
        raise DataError(f"data dir {data_dir} does not exist (expected {expected})")
    candidates = list(dict.fromkeys([data_dir] + [resolve_folder(data_dir, s) for s in subdirs]))
    for candidate in candidates:
        if candidate.is_dir() and _has(candidate, marker):
            return candidate
    looked = ", ".join(str(c) for c in candidates)
    raise DataError(
        f"no data for this task under {data_dir}: expected {expected} in one of: {looked}"
    )


def _has(folder: Path, marker: str) -> bool:
    import fnmatch

    return any(fnmatch.fnmatch(c.name.lower(), marker.lower()) for c in folder.iterdir())


def local_pools(task: Task, data_dir: str | Path, need: frozenset[str] = ALL_SPLITS) -> Pools:
    """The task's pools from files under ``data_dir``.

    ``need`` names the splits the caller reads; a commonsense/MMLU-Pro/GEM folder without
    ``train.json`` is accepted when ``"train"`` is not among them (its train pool is empty).
    """
    data_dir = Path(data_dir)
    loader = task.extra["loader"]
    if loader in ("commonsense", "mmlu_pro", "gem"):
        return _instruction_pools(task, data_dir, need)
    if loader == "truthfulqa":
        return _truthfulqa_pools(task, data_dir)
    if loader == "clutrr":
        return _lofit_pools(task, data_dir, "clutrr", ".json", _clutrr_example)
    if loader == "mquake":
        return _lofit_pools(task, data_dir, "mquake", ".jsonl", _mquake_example)
    if loader == "custom":
        return custom_pools(task, data_dir)
    raise DataError(f"task {task.name} has no local file format (its data is generated)")


# --- instruction/answer files ---------------------------------------------------------------


def _instruction_pools(task: Task, data_dir: Path, need: frozenset[str]) -> Pools:
    dirname = task.extra.get("dirname", task.name)
    names = list(dict.fromkeys([dirname, task.name, *task.extra.get("folder_aliases", ())]))
    # the task folder itself, a root holding it (also under the benchmark's name) or the
    # LLM-Adapters repository root (its dataset/ folder)
    subdirs = [*names, *(f"{task.benchmark}/{n}" for n in names), *(f"dataset/{n}" for n in names)]
    root = _locate(
        data_dir, subdirs, "test.json*", "train.json and test.json (optional valid.json)"
    )
    train = _find(root, ("train",))
    test = _find(root, ("test",))
    if train is None and "train" in need:
        raise DataError(
            f"{root}: missing train.json (or train.jsonl) next to {test.name}; a folder with "
            "test.json alone can be evaluated (jola-ray evaluate --split test, method zero_shot)"
            " but not trained on"
        )
    dev = _find(root, _DEV_NAMES)
    return Pools(
        train=_instruction_file(task, train, "train") if train else [],
        dev=_instruction_file(task, dev, "dev") if dev else None,
        test=_instruction_file(task, test, "test"),
        origin=f"files in {root}",
    )


def _instruction_file(task: Task, path: Path, split: str) -> list[Example]:
    examples = []
    for number, row in read_records(path):
        examples.append(
            _instruction_example(task, row, f"{path}: row {number}", f"{split}-{number:06d}")
        )
    return examples


def _instruction_example(task: Task, row: dict, where: str, default_id: str) -> Example:
    instruction = formats.require(row, "instruction", where)
    extra_input = row.get("input") or ""
    if isinstance(extra_input, str) and extra_input.strip():
        instruction = f"{instruction}\n\n{extra_input}"
    answer = formats.require(row, "answer", where).strip()
    formats.check_label(answer, task.labels, where)
    refs = row.get("references") or ()
    if not isinstance(refs, (list, tuple)) or not all(isinstance(r, str) for r in refs):
        raise DataError(f"{where}: field 'references' should be a list of strings")
    aliases = tuple(r.strip() for r in refs if r.strip())
    if aliases and answer not in aliases:
        aliases = (answer, *aliases)
    example_id = str(row.get("id") or default_id)
    return Example(
        id=example_id,
        prompt=build_prompt(instruction),
        answer=answer,
        aliases=aliases,
        options=formats.listed_options(instruction, task.labels, answer, where),
    )


# --- LoFiT files ----------------------------------------------------------------------------


def _truthfulqa_pools(task: Task, data_dir: Path) -> Pools:
    fold = task.extra["fold"]
    expected = f"fold_{fold}_{{train,val,test}}_seed_42.csv (ITI/LoFiT TruthfulQA CSV)"
    root = _locate(
        data_dir,
        ["truthfulqa", "lofit/truthfulqa", "dataset/truthfulqa"],
        f"fold_{fold}_test_seed_*.csv",
        expected,
    )
    pools = {}
    for split in ("train", "val", "test"):
        matches = sorted(root.glob(f"fold_{fold}_{split}_seed_*.csv"))
        preferred = root / f"fold_{fold}_{split}_seed_42.csv"
        path = preferred if preferred.is_file() else (matches[0] if matches else None)
        if path is None:
            raise DataError(
                f"{root}: missing fold_{fold}_{split}_seed_42.csv (expected {expected})"
            )
        pools[split] = _truthfulqa_csv(path, split)
    return Pools(pools["train"], pools["val"], pools["test"], f"files in {root}")


def _truthfulqa_csv(path: Path, split: str) -> list[Example]:
    with io.StringIO(read_text(path), newline="") as handle:
        reader = csv.DictReader(handle)
        needed = ("Question", "Best Answer", "Correct Answers", "Incorrect Answers")
        missing = [c for c in needed if c not in (reader.fieldnames or [])]
        if missing:
            raise DataError(
                f"{path}: missing column(s) {', '.join(missing)} (has {reader.fieldnames})"
            )
        examples = []
        for number, row in enumerate(reader, 2):  # row 1 is the header
            where = f"{path}: row {number}"
            for column in needed:
                if not (row.get(column) or "").strip():
                    raise DataError(f"{where}: field {column!r} is empty")
            examples.append(
                formats.truthfulqa(
                    f"{split}-{number:04d}",
                    row["Question"],
                    row["Best Answer"],
                    formats.split_answers(row["Correct Answers"]),
                    formats.split_answers(row["Incorrect Answers"]),
                    where,
                )
            )
    return examples


def _lofit_pools(task: Task, data_dir: Path, name: str, suffix: str, convert) -> Pools:
    expected = f"train{suffix}, val{suffix} and test{suffix} (LoFiT's {name} split)"
    root = _locate(data_dir, [name, f"lofit/{name}", f"dataset/{name}"], f"test{suffix}", expected)
    pools = {}
    for split in ("train", "val", "test"):
        path = _child(root, f"{split}{suffix}")
        if not path.is_file():
            raise DataError(f"{root}: missing {path.name} (expected {expected})")
        pools[split] = [
            convert(row, f"{path}: row {n}", f"{split}-{n:05d}") for n, row in read_records(path)
        ]
    return Pools(pools["train"], pools["val"], pools["test"], f"files in {root}")


def _clutrr_example(row: dict, where: str, default_id: str) -> Example:
    instruction, answer = formats.clutrr(row, where)
    return Example(
        id=str(row.get("id") or default_id), prompt=build_prompt(instruction), answer=answer
    )


def _mquake_example(row: dict, where: str, default_id: str) -> Example:
    instruction, answer, aliases = formats.mquake(row, where)
    case = row.get("case_id")
    example_id = f"case-{case:05d}" if isinstance(case, int) else default_id
    return Example(id=example_id, prompt=build_prompt(instruction), answer=answer, aliases=aliases)


# --- custom JSONL ---------------------------------------------------------------------------


def custom_pools(task: Task, path: str | Path | None) -> Pools:
    """A custom task's pools: split files, or one file with a ``split`` field per row."""
    if path is None:
        raise DataError(f"task {task.name} needs its files: give --data-dir (see docs/data.md)")
    path = Path(path)
    expected = "train.jsonl + test.jsonl (+ dev.jsonl), or one .jsonl file with a 'split' field"
    if not path.exists():
        raise DataError(f"{path} does not exist (expected {expected})")
    if path.is_dir() and (path / "train.jsonl").is_file():
        if not (path / "test.jsonl").is_file():
            raise DataError(f"{path}: missing test.jsonl (expected {expected})")
        dev_path = path / "dev.jsonl"
        return Pools(
            train=_instruction_file(task, path / "train.jsonl", "train"),
            dev=_instruction_file(task, dev_path, "dev") if dev_path.is_file() else None,
            test=_instruction_file(task, path / "test.jsonl", "test"),
            origin=f"files in {path}",
        )
    single = path / "data.jsonl" if path.is_dir() else path
    if not single.is_file():
        raise DataError(f"{path}: no train.jsonl or data.jsonl (expected {expected})")
    by_split: dict[str, list[Example]] = {"train": [], "dev": [], "test": []}
    for number, row in read_records(single):
        where = f"{single}: row {number}"
        split = _SPLIT_ALIASES.get(str(formats.require(row, "split", where)).strip().lower())
        if split is None:
            raise DataError(
                f"{where}: field 'split' is {row['split']!r}, expected train, dev or test"
            )
        by_split[split].append(_instruction_example(task, row, where, f"{split}-{number:06d}"))
    for split in ("train", "test"):
        if not by_split[split]:
            raise DataError(f"{single}: no row has split {split!r} (expected {expected})")
    return Pools(by_split["train"], by_split["dev"] or None, by_split["test"], f"file {single}")
