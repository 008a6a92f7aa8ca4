"""The ``Attached`` handle of a head edit (JoLA, LoFiT): a ``HeadEdit`` plus its penalty rule.

Shared by the methods whose edit sits on head outputs before ``o_proj``; the edit itself (math,
hooks, exact detach, persistence) lives in ``jola_ray.editing``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any


class HeadEditHandle:
    """Adapts a ``jola_ray.editing.HeadEdit`` to ``methods.base.Attached``.

    ``penalty_rule(edit, step, total_steps)`` returns the weighted penalty tensor or None.
    """

    def __init__(self, edit, penalty_rule: Callable[[Any, int, int], Any] | None = None):
        self.edit = edit
        self.method = edit.method
        self._penalty_rule = penalty_rule

    def parameters(self):
        return self.edit.parameters()

    def penalty(self, step: int, total_steps: int):
        if self._penalty_rule is None:
            return None
        return self._penalty_rule(self.edit, step, total_steps)

    def remove(self) -> None:
        self.edit.remove()

    def disabled(self):
        return self.edit.disabled()

    def inspect(self):
        return self.edit.inspect()

    def summary(self) -> dict[str, Any]:
        table = self.edit.inspect()
        selected = table[table["selected"]][["layer", "head"]].values.tolist()
        out = {
            "num_selected_heads": len(selected),
            "selected_heads": [[int(a), int(b)] for a, b in selected],
        }
        if self.method == "jola":  # gated: an edit whose every gate closed does nothing
            from jola_ray.editing.jola import all_gates_closed_warning

            if warning := all_gates_closed_warning(table):
                out["warning"] = warning
        return out

    def epoch_metrics(self) -> dict[str, float]:
        """The open-gate fraction, and per part and layer (``open_gate_fraction_add_l0``, ...)
        what the gate-dynamics analysis reads."""
        return {
            "open_gate_fraction": float(self.edit.open_gate_fraction()),
            **self.edit.gate_statistics(),
        }

    def save(self, path: str | Path) -> Path:
        from jola_ray.editing import save_edit

        return save_edit(self.edit, path)


def load_head_edit(model, path: str | Path, penalty_rule=None) -> HeadEditHandle:
    """Re-attach a saved head edit (``jola_ray.editing.load_edit``) as a handle."""
    from jola_ray.editing import load_edit

    return HeadEditHandle(load_edit(model, path), penalty_rule)
