"""Configuration of notebook 01 (tasks): which AnyMDP tasks it samples, measures and explores.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..workbook.fields import STATE_COUNT, check, param

TASK_BYTES_LIMIT = 2 * 2**30
"""Largest array of one task (transition matrix: ns * na * ns float64) a notebook-01 setting may ask for."""
EXPLORER_MAX_NS = 128  # the largest state count of the explorer's menu (omnirl_core.views.explorer.NS_CHOICES)
EXPLORER_MAX_NA = 16  # the explorer's action field accepts 2..16


def task_bytes(ns: int, na: int) -> int:
    """Bytes of one task's transition matrix (float64 [ns, na, ns]), the largest of its arrays."""
    return 8 * int(ns) * int(na) * int(ns)


@dataclass
class TasksConfig:
    """Notebook 01: sample AnyMDP tasks, compare their statistics with the reference, explore one."""

    seed: int = param(0, ge=0)
    "Base random seed; every task drawn in the notebook derives from it."
    na: int = param(5, ge=2)
    "Number of actions of every task."
    example_ns: list[int] = param([16], rule=STATE_COUNT, min_len=1)
    "State counts of the example tasks shown."
    stats_ns: list[int] = param([1, 16, 32], rule=STATE_COUNT, min_len=1)
    "State counts for the statistics-vs-reference table (1 = bandit)."
    stats_tasks_per_ns: int = param(20, ge=1)
    "Tasks drawn per state count for the statistics."
    explorer_ns: int = param(16, rule=STATE_COUNT)
    "State count of the task the interactive explorer opens with."
    timing_ns: list[int] = param([16, 32, 64], rule=STATE_COUNT, min_len=1)
    "State counts whose task-sampling time is measured."
    timing_repeats: int = param(3, ge=1)
    "Repeats of each timing measurement."
    play_steps: int = param(200, ge=1)
    "Steps taken by the explorer's play mode."

    def validate(self) -> None:
        check(self.na <= EXPLORER_MAX_NA, "na", self.na, f"<= {EXPLORER_MAX_NA} (the explorer's largest action count)")
        check(self.explorer_ns <= EXPLORER_MAX_NS, "explorer_ns", self.explorer_ns,
              f"<= {EXPLORER_MAX_NS} (the explorer's largest state count)")
        for key in ("example_ns", "stats_ns", "timing_ns"):
            for i, ns in enumerate(getattr(self, key)):
                need = task_bytes(ns, self.na)
                check(need <= TASK_BYTES_LIMIT, f"{key}[{i}]", ns,
                      f"small enough for one task's transition matrix to fit in {TASK_BYTES_LIMIT / 2**30:g} GiB "
                      f"(ns * na * ns * 8 bytes = {need / 2**30:.1f} GiB here)")
