"""Task files as users have them: wrong encodings, saved web pages, LFS pointers, truncated
downloads, folders named as users type them, a test file alone. Each gets a message naming the
file and what it is, through the CLI with no traceback."""

import json
from pathlib import Path

import pytest

from jola_ray.cli import main
from jola_ray.data import get_task, load_pools, load_splits
from jola_ray.errors import DataError

FIXTURES = Path(__file__).parent / "fixtures"
BOOLQ_ROWS = json.loads((FIXTURES / "commonsense" / "boolq" / "train.json").read_text())


def _boolq(tmp_path, train: bytes | None, test: bytes | None = None) -> Path:
    folder = tmp_path / "boolq"
    folder.mkdir(exist_ok=True)
    (folder / "test.json").write_bytes(test or json.dumps(BOOLQ_ROWS[:3]).encode())
    if train is not None:
        (folder / "train.json").write_bytes(train)
    return folder


def _cp1252() -> bytes:
    rows = [dict(BOOLQ_ROWS[0]), *BOOLQ_ROWS[1:]]
    rows[0]["instruction"] = rows[0]["instruction"] + " caf\u00e9 \u2019quoted\u2019"
    return json.dumps(rows, ensure_ascii=False).encode("cp1252")


LFS = (
    b"version https://git-lfs.github.com/spec/v1\n"
    b"oid sha256:4d7a214614ab2935c943f9e0ff69d22eadbb8f32b1258daaa5e2ca24d17e2393\n"
    b"size 1234567\n"
)
HTML = b'\n<!DOCTYPE html>\n<html lang="en"><head><title>dataset/boolq/train.json</title>'
TRUNCATED = json.dumps(BOOLQ_ROWS).encode()[:-40]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (_cp1252(), r"train.json: not UTF-8 text \(byte 0x.. at offset \d+; saved as cp1252"),
        (b"", r"train.json: the file is empty \(0 bytes\)"),
        (b"\n  \n", r"train.json: the file is empty"),
        (LFS, r"train.json: this is a Git LFS pointer .*git lfs pull"),
        (HTML, r"train.json: this is an HTML page, not the data"),
        (
            json.dumps({"version": 1, "data": BOOLQ_ROWS}, indent=1).encode(),
            r"train.json: a JSON object \(keys: version, data\)",
        ),
        (
            json.dumps({"data": BOOLQ_ROWS}).encode(),
            r"train.json: a JSON object \(keys: data\) holding a list of rows",
        ),
        (TRUNCATED, r"train.json: not valid JSON at row 6 \(line 1\).*truncated download"),
        (
            json.dumps(BOOLQ_ROWS[:2], indent=1).encode()[:-2],
            r"ends after row 2 without its closing '\]' \(a truncated download\?\)",
        ),
    ],
    ids=["cp1252", "empty", "blank", "lfs", "html", "object", "object-1line", "cut", "no-close"],
)
def test_bad_files_are_named_for_what_they_are(tmp_path, content, message, capsys):
    folder = _boolq(tmp_path, content)
    with pytest.raises(DataError, match=message):
        load_pools(get_task("boolq"), tmp_path)
    # the CLI prints the message, no traceback (data show, like evaluate and train, loads here)
    assert main(["data", "show", "boolq", "--data-dir", str(folder)]) != 0
    err = capsys.readouterr().err
    assert "Traceback" not in err and "train.json" in err


def test_a_jsonl_file_cut_mid_line_names_its_last_row(tmp_path):
    folder = tmp_path / "mquake"
    folder.mkdir()
    src = FIXTURES / "lofit" / "mquake"
    for split in ("train", "val", "test"):
        (folder / f"{split}.jsonl").write_text((src / f"{split}.jsonl").read_text())
    text = (folder / "train.jsonl").read_text()
    (folder / "train.jsonl").write_text(text.rstrip("\n")[:-15])
    n = len(text.strip().splitlines())
    with pytest.raises(DataError, match=rf"train.jsonl: row {n}: .*the last line: a truncated"):
        load_pools(get_task("mquake"), tmp_path)


def test_byte_order_mark_is_accepted(tmp_path):
    _boolq(tmp_path, b"\xef\xbb\xbf" + json.dumps(BOOLQ_ROWS).encode())
    assert len(load_pools(get_task("boolq"), tmp_path).train) == len(BOOLQ_ROWS)
    csv_dir = tmp_path / "truthfulqa"
    csv_dir.mkdir()
    for path in (FIXTURES / "lofit" / "truthfulqa").iterdir():
        (csv_dir / path.name).write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    pools = load_pools(get_task("truthfulqa_fold0"), tmp_path)
    assert pools.train[0].prompt.endswith("Q: Can pigs fly? A:\n\n### Response:\n")


@pytest.mark.parametrize(
    ("task", "typed"),
    [
        ("hellaswag", "HellaSwag"),
        ("winogrande", "WinoGrande"),
        ("piqa", "PIQA"),
        ("obqa", "OpenBookQA"),
        ("siqa", "SIQA"),
        ("arc_e", "arc-easy"),
    ],
)
def test_folders_as_users_name_them(tmp_path, task, typed):
    folder = tmp_path / typed
    folder.mkdir()
    labels = get_task(task).labels
    rows = [{"instruction": f"Q{i}? Answer format: {'/'.join(labels)}", "answer": labels[0]}
            for i in range(4)]  # fmt: skip
    (folder / "Train.json").write_text(json.dumps(rows))
    (folder / "test.json").write_text(json.dumps(rows))
    pools = load_pools(get_task(task), tmp_path)
    assert len(pools.train) == 4 and pools.origin == f"files in {folder}"


def test_llm_adapters_repository_root_with_test_files_only(tmp_path, capsys):
    """The LLM-Adapters repo ships dataset/<task>/test.json (training data is elsewhere)."""
    folder = tmp_path / "dataset" / "boolq"
    folder.mkdir(parents=True)
    (folder / "test.json").write_text(json.dumps(BOOLQ_ROWS))
    splits = load_splits("boolq", data_dir=tmp_path, need={"test"})
    assert splits.sizes() == {"train": 0, "dev": 0, "test": len(BOOLQ_ROWS)}
    with pytest.raises(DataError, match=r"missing train.json .* can be evaluated"):
        load_splits("boolq", data_dir=tmp_path)
    assert main(["data", "show", "boolq", "--data-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "test only" in out and "Answer format: true/false" in out


def test_folders_tried_are_listed_once_each(tmp_path):
    with pytest.raises(DataError) as info:
        load_pools(get_task("boolq"), tmp_path)
    message = str(info.value)
    tried = message.split("in one of: ", 1)[1].split(", ")
    assert len(tried) == len(set(tried))
    assert str(tmp_path / "dataset" / "boolq") in tried


def test_evaluate_and_train_name_a_bad_file_without_traceback(tmp_path, capsys):
    folder = _boolq(tmp_path, _cp1252())
    common = ["--task", "boolq", "--model", "tiny-llama", "--data-dir", str(folder)]
    assert main(["evaluate", *common, "--split", "dev", "--device", "cpu"]) == 1
    out = tmp_path / "run"
    assert main(["train", *common, "--device", "cpu", "--output-dir", str(out)]) == 1
    err = capsys.readouterr().err
    assert err.count("not UTF-8 text") == 2 and "Traceback" not in err
    assert not out.exists()
