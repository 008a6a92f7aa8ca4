"""The registry and catalog: one module per method, names nowhere else, torch-free reading."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

from jola_ray.methods import catalog, registry
from jola_ray.methods.base import Method

ROOT = Path(__file__).resolve().parents[2]


def test_every_registered_method_is_a_module_with_a_catalog_row():
    for name in registry.names():
        method = registry.get(name)
        assert isinstance(method, Method) and method.name == name
        assert name in catalog.CATALOG  # the report knows its display name and row
        cfg, problems = method.build_config({})
        assert problems == [] and cfg is not None  # defaults are valid settings


def test_paper_row_order():
    shuffled = ["jola", "lofit", "loreft", "repe", "red", "bitfit", "lora", "zero_shot", "new"]
    order = catalog.row_order(shuffled)
    assert [catalog.display_name(m) for m in order] == [
        "Zero-shot", "LoRA", "BitFit", "RED", "RepE", "ReFT", "LoFiT", "JoLA", "new",
    ]  # fmt: skip


def test_unknown_method_suggests_close_names():
    from jola_ray.errors import ConfigError

    with pytest.raises(ConfigError, match="did you mean lora"):
        registry.get("lorra")


def test_reading_method_settings_imports_no_torch():
    code = (
        "import sys; from jola_ray.methods import registry; from jola_ray.train import RunConfig;"
        "[registry.get(n).fields() for n in registry.names()];"
        "RunConfig.from_dict({'method': 'lora', 'lora.r': 4});"
        "import analysis.tasks; print('torch' in sys.modules, 'peft' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True
    )
    assert out.stdout.split() == ["False", "False"]


def test_library_code_names_no_method_outside_the_registry_and_method_modules():
    """A new method is one module + one registry line: no other library file names one.
    (``"lofit"`` is also the name of LoFiT's task benchmark in the data layer, ``"iti"`` the
    name of ITI's TruthfulQA scoring prompt in evaluation (``mc_prompt``): not methods.)"""
    pattern = re.compile(r"[\"'](" + "|".join(registry.names()) + r")[\"']")
    allowed = ROOT / "jola_ray" / "methods"
    offenders = []
    for folder in ("jola_ray", "analysis"):
        for path in (ROOT / folder).rglob("*.py"):
            if allowed in path.parents or "editing" in path.parts:
                continue  # the method modules, and the head-edit sites JoLA/LoFiT sit on
            for i, line in enumerate(path.read_text().splitlines(), 1):
                if (
                    pattern.search(line)
                    and "benchmark" not in line
                    and "TaskInfo" not in line
                    and "mc_prompt" not in line.lower()
                ):
                    offenders.append(f"{path.relative_to(ROOT)}:{i}: {line.strip()}")
    assert offenders == []
