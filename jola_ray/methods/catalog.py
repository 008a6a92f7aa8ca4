"""Method names, display names and the paper's row order; torch-free (``analysis`` reads it).

The rows of the JoLA paper's main comparison are Zero-shot, LoRA, BitFit, RED, RepE, ReFT,
LoFiT, JoLA; ITI appears in LoFiT's tables (placed here beside RepE, the other inference-time
method). A method listed here but not in ``registry.py`` is known by name to the report (its
display name and row) before its module lands.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class MethodInfo:
    """``name`` is the registry key (``method: lora``), ``display`` the table's row label,
    ``order`` the row position, ``tuned``: whether the method takes named hyperparameter
    configurations (zero-shot does not: one trial per grid point)."""

    name: str
    display: str
    order: int
    tuned: bool = True


CATALOG: dict[str, MethodInfo] = {
    info.name: info
    for info in (
        MethodInfo("zero_shot", "Zero-shot", 0, tuned=False),
        MethodInfo("lora", "LoRA", 10),
        MethodInfo("bitfit", "BitFit", 20),
        MethodInfo("red", "RED", 30),
        MethodInfo("repe", "RepE", 40),
        MethodInfo("iti", "ITI", 45),
        MethodInfo("loreft", "ReFT", 50),
        MethodInfo("lofit", "LoFiT", 60),
        MethodInfo("jola", "JoLA", 70),
    )
}


def display_name(method: str) -> str:
    """Row label of a method name (``jola`` -> ``JoLA``); unknown names stay as they are."""
    info = CATALOG.get(str(method))
    return info.display if info else str(method)


def is_tuned(method: str) -> bool:
    """Whether ``method`` takes named configurations (unknown names: yes)."""
    info = CATALOG.get(str(method))
    return info.tuned if info else True


def row_order(methods) -> list:
    """The distinct ``methods`` in the paper's row order; unknown names last, by name."""

    def key(m):
        info = CATALOG.get(str(m))
        return (info.order if info else 1000, str(m))

    return sorted(set(methods), key=key)
