"""Figures and the widget: what a person looks at.

- :mod:`.task_graph` a task's transition graph; :mod:`.task_figures` summaries, sampler steps, trajectories,
  per-ns comparisons
- :mod:`.training` loss curves; :mod:`.evaluation` score curves and the in-context gain
- :mod:`.explorer` :class:`TaskExplorer`, the ipywidgets explorer of a sampled task (imported on demand:
  ``from omnirl_core.views.explorer import TaskExplorer``)
"""

from .evaluation import plot_curves, plot_gain, plot_long_context
from .task_figures import (
    markdown_stat_table,
    plot_action_split,
    plot_oracle_vs_random,
    plot_reward_structure,
    plot_stat_comparison,
    plot_task_summary,
    plot_timings,
    plot_trajectory,
    plot_transition_matrices,
)
from .task_graph import (
    LABEL_MAX_STATES,
    figure_to_png,
    graph_edges,
    node_positions,
    plot_transition_graph,
    terminal_kinds,
)
from .training import plot_loss_curves, plot_position_loss

__all__ = [
    "LABEL_MAX_STATES", "figure_to_png", "graph_edges", "node_positions", "terminal_kinds", "plot_transition_graph",
    "plot_task_summary", "plot_trajectory", "plot_stat_comparison", "plot_transition_matrices", "plot_action_split",
    "plot_reward_structure", "plot_oracle_vs_random", "plot_timings", "markdown_stat_table",
    "plot_loss_curves", "plot_position_loss", "plot_curves", "plot_gain", "plot_long_context",
]
