"""Configuration of notebook 01 (tasks): which AnyMDP tasks it samples, measures and explores.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..workbook.fields import STATE_COUNT, param


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
