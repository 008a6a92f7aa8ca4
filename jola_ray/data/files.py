"""Reading a task file as users have it, and naming what it really is when it is not the data.

Users download task files by hand: from a GitHub page (an HTML page saved instead of the
file), from a clone without Git LFS (a three-line pointer instead of the file), from an editor
that saved cp1252 or added a byte-order mark, or from a download that stopped half-way. Each
gets a ``DataError`` naming the file and what to do, never a traceback or a silently short list:

* a UTF-8 byte-order mark is accepted;
* bytes that are not UTF-8: the byte offset and the suggestion to re-save as UTF-8;
* an empty file, a Git LFS pointer, an HTML page: said so, by name;
* a JSON object where a list of rows is expected: its keys;
* a JSON list that breaks: the row (1-based item) where it breaks and the line, and whether
  the text simply ends there (a truncated download).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

from jola_ray.errors import DataError

_LFS_PREFIX = b"version https://git-lfs.github.com/spec/"


def read_text(path: Path) -> str:
    """The file's text (UTF-8, a byte-order mark accepted); a ``DataError`` naming the problem."""
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise DataError(f"{path}: cannot read: {err.strerror or err}") from err
    if not raw.strip():
        raise DataError(f"{path}: the file is empty ({len(raw)} bytes)")
    if raw.startswith(_LFS_PREFIX):
        raise DataError(
            f"{path}: this is a Git LFS pointer ({len(raw)} bytes), not the data: run "
            "`git lfs pull` in the repository it came from, or download the file itself"
        )
    try:
        text = raw.decode("utf-8-sig")  # strips a UTF-8 byte-order mark
    except UnicodeDecodeError as err:
        bad = raw[err.start : err.start + 1].hex()
        raise DataError(
            f"{path}: not UTF-8 text (byte 0x{bad} at offset {err.start}; saved as cp1252 or "
            "Latin-1?): re-save it as UTF-8, e.g. `iconv -f cp1252 -t utf-8 IN > OUT`"
        ) from None
    head = text.lstrip()[:200].lower()
    if head.startswith(("<!doctype html", "<html", "<?xml")) or "<html" in head:
        raise DataError(
            f"{path}: this is an HTML page, not the data (a web page saved instead of the "
            "file?): download the raw file (on GitHub: the 'Raw' button)"
        )
    return text


def _line_of(text: str, pos: int) -> int:
    return text.count("\n", 0, pos) + 1


def _json_list(path: Path, text: str) -> Iterator[tuple[int, object]]:
    """The items of a JSON list, decoded one by one so a break is named by its row."""
    decoder = json.JSONDecoder()
    end = len(text.rstrip())
    pos = text.index("[") + 1
    number = 0
    while True:
        while pos < end and text[pos] in " \t\r\n":
            pos += 1
        if pos < end and text[pos] == "]" and number == 0:
            return
        if pos >= end:
            break
        try:
            item, pos = decoder.raw_decode(text, pos)
        except json.JSONDecodeError as err:
            cut = "" if text[end - 1] == "]" else " (the list never closes: a truncated download?)"
            raise DataError(
                f"{path}: not valid JSON at row {number + 1} (line {_line_of(text, err.pos)}): "
                f"{err.msg}{cut}; {number} complete row(s) before it"
            ) from None
        number += 1
        yield number, item
        while pos < end and text[pos] in " \t\r\n":
            pos += 1
        if pos < end and text[pos] == ",":
            pos += 1
            continue
        if pos < end and text[pos] == "]":
            if text[pos + 1 : end].strip():
                raise DataError(
                    f"{path}: text after the end of the JSON list (line {_line_of(text, pos)})"
                )
            return
        if pos < end:
            raise DataError(
                f"{path}: not valid JSON at row {number + 1} (line {_line_of(text, pos)}): "
                f"expected ',' or ']' after row {number}"
            )
        break
    raise DataError(
        f"{path}: the JSON list ends after row {number} without its closing ']' (a truncated "
        "download?)"
    )


def read_records(path: Path) -> Iterator[tuple[int, dict]]:
    """(row number, record) of a JSON-list or JSON-lines file (row = 1-based item or line)."""
    text = read_text(path)
    if text.lstrip().startswith("["):
        yield from _json_list(path, text)
        return
    lines = text.splitlines()
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            _not_json_lines(path, text, number, len(lines), err)
        if number == 1 and len(text.strip().splitlines()) == 1 and _wraps_rows(record):
            keys = ", ".join(list(record)[:6])
            raise DataError(
                f"{path}: a JSON object (keys: {keys}) holding a list of rows, expected the "
                "list itself ([{...}, ...]) or one JSON row per line: save that list"
            )
        yield number, record


def _wraps_rows(record: object) -> bool:
    """A file's only line is a JSON object with a list of objects in it: rows wrapped in an
    object (``{"data": [{...}, ...]}``), not a one-row JSON-lines file."""
    return isinstance(record, dict) and any(
        isinstance(v, list) and len(v) > 1 and all(isinstance(x, dict) for x in v)
        for v in record.values()
    )


def _not_json_lines(path: Path, text: str, number: int, n_lines: int, err) -> None:
    """Raise the message for a JSON-lines file whose line ``number`` does not parse."""
    try:
        whole = json.loads(text)
    except json.JSONDecodeError:
        whole = None
    if isinstance(whole, dict):
        keys = ", ".join(list(whole)[:6])
        raise DataError(
            f"{path}: a JSON object (keys: {keys}), expected a list of rows ([{{...}}, ...]) "
            "or one JSON row per line; if the rows sit under one of these keys, save that list"
        ) from None
    last = number == max(i for i, line in enumerate(text.splitlines(), 1) if line.strip())
    cut = " (the last line: a truncated download?)" if last and n_lines > 1 else ""
    raise DataError(f"{path}: row {number}: not valid JSON ({err.msg}){cut}")
