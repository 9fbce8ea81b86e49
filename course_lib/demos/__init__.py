"""Slider demos of the notebooks, one module per notebook: compute (cached, testable) + draw, built on widgets.

Each module's ``notebook_demos(...)`` builds that notebook's demos from the notebook's own inputs (what the notebook
does not pass, it loads the way the notebook's setup does) and says how the benchmark measures each: the
representative slider settings and the latency budget. The notebook shows them; ``./course latency`` and the tests
of ``tests/test_demo_proxies.py`` measure the very same objects, so no argument is copied between the two.

    sliders = ddim.notebook_demos(ring=ring, alphas_cumprod=alphas_cumprod, mlp=mlp)
    forward = sliders["forward"]          # built on first use, then kept
    forward.show()
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

__all__ = ["BUDGET_KINDS", "Measured", "NotebookDemos"]

# "analytic": a 2-D or analytic demo; "images": a move samples or decodes images; "sampler": a move runs a long
# sequential sampler on purpose (notebook 01's S >= 100, the cost DDIM removes). The milliseconds are the benchmark's.
BUDGET_KINDS = ("analytic", "images", "sampler")


@dataclass(frozen=True)
class Measured:
    """How the benchmark measures one demo: ``demo`` (its key in the notebook's demos), the slider ``values`` it
    sets (the extremes included) and the ``budget`` kind those moves are held to."""

    demo: str
    values: tuple
    budget: str = "analytic"

    def __post_init__(self):
        if self.budget not in BUDGET_KINDS:
            raise ValueError(f"budget: expected one of {BUDGET_KINDS}, got {self.budget!r}")
        if not self.values or not all(isinstance(v, dict) for v in self.values):
            raise ValueError(f"values: expected a non-empty sequence of slider settings (dicts), got {self.values!r}")


class NotebookDemos(Mapping):
    """A notebook's demos by name, each built on first use (building may sample or train) and then kept.

    ``builders`` maps a name to a function of no arguments returning a :class:`~course_lib.widgets.SliderDemo`;
    ``measured`` maps the benchmark's label (``"01 forward"``) to a :class:`Measured`."""

    def __init__(self, notebook: str, builders: dict, measured: dict):
        unknown = {label: m.demo for label, m in measured.items() if m.demo not in builders}
        if unknown:
            raise ValueError(f"measured: {unknown} name no demo of notebook {notebook} (it has {sorted(builders)})")
        self.notebook, self._builders, self.measured, self._built = notebook, dict(builders), dict(measured), {}

    def __getitem__(self, name: str):
        if name not in self._builders:
            raise KeyError(f"notebook {self.notebook} has no demo {name!r}; it has {sorted(self._builders)}")
        if name not in self._built:
            self._built[name] = self._builders[name]()
        return self._built[name]

    def __iter__(self):
        return iter(self._builders)

    def __len__(self):
        return len(self._builders)

    def built(self) -> list[str]:
        """The demos built so far (a proxy for what a notebook cell or a benchmark run cost)."""
        return list(self._built)
