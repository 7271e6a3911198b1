# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#   kernelspec:
#     name: omnirl
#     display_name: OmniRL (.venv)
#     language: python
# ---

# %% [markdown]
# # 01 · AnyMDP: random tabular worlds
#
# OmniRL is meta-trained on a very large number of randomly generated tabular tasks, the **AnyMDP**
# distribution (paper Algorithm 1). A task has `ns` states and `na` actions; its states carry a *hidden
# ranking*: the sampler builds the dynamics and rewards so that "higher" states are, broadly, worth more,
# while the agent only sees a random relabelling of the state ids. This notebook
#
# 1. walks through Algorithm 1 step by step on a sampled task,
# 2. shows a few example tasks as graphs and summary figures,
# 3. opens an interactive explorer (resample tasks, inspect transitions, play policies),
# 4. compares the statistics of our sampler with those of the reference sampler (Xenoverse 0.1.14.0),
# 5. compares exact oracle and random returns, and measures how long sampling takes.
#
# All logic lives in `omnirl_core.world` (tasks, samplers, oracle, statistics) and `omnirl_core.views` (figures,
# the explorer widget); cells here only call it.

# %% tags=["parameters"]
config_path = "params/quick/01_tasks.yaml"
run_dir = "outputs/quick"

# %%
import csv
import json
import time

import numpy as np
from IPython.display import Image, Markdown, display

from omnirl_core import views
from omnirl_core.views.explorer import TaskExplorer
from omnirl_core.workbook import notebook_config, repo_path
from omnirl_core.world import anymdp, oracle, stats

cfg = notebook_config("01_tasks", globals())  # the file, then what papermill injected; saved in run_dir
out_dir = repo_path(run_dir) / "01_tasks"
out_dir.mkdir(parents=True, exist_ok=True)


def save(fig, name):
    """Save a figure into the run directory and show it inline."""
    path = out_dir / f"{name}.png"
    fig.savefig(path, dpi=110)
    display(Image(filename=str(path)))


cfg

# %% [markdown]
# ## 1. Algorithm 1, step by step
#
# ### Sizes and episode limits
# A task is either a **bandit** (`ns = 1`) or has `ns >= 8` states; the paper uses `na = 5` actions.
# Every task draws its own episode step limit: 1 for bandits, otherwise uniform in `[lo, hi)` with
# `lo = max(4 ns, 100)` and `hi = max(min(8 ns, 500), lo + 1)`. The limit is a real number; an episode is
# cut once its step count reaches it. Small tasks thus get at least 100 steps, large ones at most 500.

# %%
rng = np.random.default_rng(cfg.seed)
limits = {ns: [round(anymdp.episode_limit(ns, rng), 1) for _ in range(4)] for ns in (1, 8, 16, 32, 64, 128)}
display(Markdown("| ns | four draws of max_steps |\n|---|---|\n"
                 + "\n".join(f"| {ns} | {', '.join(map(str, v))} |" for ns, v in limits.items())))

# %% [markdown]
# ### Start and terminal states
# Inner state index order *is* the hidden ranking (0 = lowest). Episodes start in the bottom three states
# (0, 1, 2): three clipped normal weights give the start probabilities, so one to three of them are used.
# A per-task pitfall rate `p = max(U(-0.2, 0.4), 0)` (about a third of tasks have none) makes each state a
# terminal **pitfall** with probability `p` (never a start state), and with probability 0.3 the top state
# `ns - 1` is a terminal **goal**. Terminal states have all-zero transition rows: the episode ends on
# entering them.

# %%
ns0 = cfg.example_ns[0]
task = anymdp.sample_anymdp(ns0, cfg.na, seed=cfg.seed)
goal, pit = views.terminal_kinds(task)
print(task)
print("start distribution over states 0..2:", np.round(task.start_prob[:3], 3))
print("pitfalls:", np.flatnonzero(pit).tolist(), "| top state is a goal:", bool(goal.any()))
print("observation id of each inner state (what the agent sees):", task.state_mapping.tolist())

# %% [markdown]
# ### A banded average transition under the hidden ranking
# For every non-terminal state `s` the sampler first draws an action-free next-state distribution on a
# band `[lo, hi)` around `s`: it may fall back up to about `ns/2` ranks and leap forward up to about `ns/4`
# ranks (and `hi` is widened until at least two non-terminal states lie ahead). Band weights are clipped
# normals in `[0.1, 1]`; the self-loop weight is halved and the top state never loops on itself. The
# left panel below is this average matrix `mean_a P(s'|s,a)` in ranking order: the band around the
# diagonal is the structure the agent must discover through the random relabelling.
#
# ### Splitting the band among actions
# Each action of a state gets a random centre in the band and all actions of that state share one width
# `sigma = clip(Exp(1), 0.2, 1.6)`; an action's share of next state `j` is proportional to
# `exp(-(c_a - j)^2 / sigma^2)`. So different actions push towards different parts of the band, and
# `P(s'|s,a)` is that share times the average row, renormalised. The other panels show each action's
# matrix; the line plot shows the split for one state.

# %%
max_leap, max_back = anymdp.band_limits(ns0)
print(f"ns={ns0}: forward leap up to {max_leap} ranks, backward up to {max_back} ranks")
save(views.plot_transition_matrices(task), "algorithm_transition_matrices")
example_state = int(np.flatnonzero(~task.terminal)[len(np.flatnonzero(~task.terminal)) // 2])
save(views.plot_action_split(task, example_state), "algorithm_action_split")

# %% [markdown]
# ### Rewards: four parts and terminal adjustments
# The mean reward `r(s, a, s')` is a sum of
# 1. **potential shaping** `phi(s) - phi(s')` with a random smooth (Fourier) potential, zero for half
#    of the tasks: it changes rewards without changing which policy is best;
# 2. a **position reward** on the next state, a random increasing profile along the ranking minus a
#    baseline, with Gaussian noise whose std depends on the state;
# 3. a sparse **state-action cost** (about 30% of `(s, a)` pairs, small);
# 4. a constant **step reward**: a small cost per step when there is a goal, a small survival bonus when
#    there are only pitfalls.
#
# Then **terminal adjustments**: entering the top state gets +1, and for up to five rounds value iteration
# checks that pitfalls are the worst places (otherwise their entry reward is lowered) and that the top of
# the ranking is worth more than the start (otherwise its entry reward is raised). A draw that still fails
# is discarded. The left figure shows the rising position reward, the pitfall penalties and the top bonus.

# %%
save(views.plot_reward_structure(task), "algorithm_rewards")
er = task.expected_reward[~task.terminal]
print(f"E[r|s,a] over non-terminal states: mean {er.mean():+.4f}, std {er.std():.4f}")

# %% [markdown]
# ### Acceptance
# A candidate task is kept only if it is worth learning: with discount `gamma = 2^(-1/ns)`, the optimal
# value must beat the uniform-random policy's by at least 2.0 at every start state after scaling by
# `(1 - gamma) * max_steps`; and the optimal policy's long-run state distribution (restarting after each
# terminal) must be spread out: Gini impurity above 0.70 and normalised entropy above 0.35. This rejects
# tasks where a random walk already does well and tasks where the oracle just sits in one or two states.

# %%
acc = anymdp.acceptance_statistics(task.transition, task.reward, task.start_prob, task.terminal, task.max_steps)
display(Markdown(
    "| check | value | threshold |\n|---|---|---|\n"
    f"| scaled oracle - random gap (min over starts) | {acc['gap']:.2f} | >= {anymdp.MIN_ORACLE_GAP} |\n"
    f"| Gini of the oracle's long-run distribution | {acc['gini']:.3f} | > {anymdp.MIN_GINI} |\n"
    f"| normalised entropy | {acc['entropy']:.3f} | > {anymdp.MIN_NORMALISED_ENTROPY} |\n"
    f"| candidate draws until acceptance | {task.meta.get('draws', '?')} | |"
))

# %% [markdown]
# ### Bandits
# With `ns = 1` the task is a multi-armed bandit: a scale `B = clip(Exp(1), 0.05, 2)`, arm means uniform
# in `[B/2, B]` (redrawn until they differ), noise proportional to each mean, and every pull ends the
# episode. Below: arm means ± noise std, the best arm in orange.

# %%
bandit = anymdp.sample_anymdp(1, cfg.na, seed=cfg.seed)
save(views.plot_transition_graph(bandit), "algorithm_bandit")

# %% [markdown]
# ## 2. Example tasks
# Each task as a graph: states on an arc in hidden-ranking order (lowest at the lower left, highest at
# the lower right), coloured by the oracle's value; edges are transitions with probability above 0.05
# (max over actions), the oracle policy's transitions in orange. The summary shows the value along the
# ranking, `E[r|s,a]`, where the oracle spends its time, and the average transition matrix.

# %%
for i, ns in enumerate(cfg.example_ns):
    ex_task = anymdp.sample_anymdp(ns, cfg.na, seed=cfg.seed + i)
    save(views.plot_transition_graph(ex_task, policy=oracle.oracle_policy(ex_task)), f"example_graph_ns{ns}")
    save(views.plot_task_summary(ex_task), f"example_summary_ns{ns}")

# %% [markdown]
# The same task placed by **observation id** instead: the band disappears. This is what an in-context
# learner faces: the ranking has to be inferred from experience.

# %%
save(views.plot_transition_graph(task, layout="observed"), "example_graph_observed")

# %% [markdown]
# ## 3. Interactive explorer
# Change `ns`, `na` or the seed (or press *Resample*) to draw a new task; pick a state to see its
# outgoing transitions and per-action successors, one action or all, a probability threshold, the layout
# (hidden ranking or observed id) and the oracle-policy overlay. *Play* runs the chosen policy (the shipped
# OmniRL-tiny model acting in context from an empty memory, the oracle, uniform random, tabular Q-learning
# with UCB exploration, or a model-based learner) in the environment and shows the visited states and the
# returns next to the exact oracle and random returns. The shipped model is the default policy when it covers
# the task's number of states (OmniRL-tiny: a bandit model for `ns = 1`, and an AnyMDP model for `ns` up to 16
# whose in-context gain is small, see the README). Widgets need a live kernel; in a static rendering only the
# initial state is shown.

# %%
explorer = TaskExplorer(ns=cfg.explorer_ns, na=cfg.na, seed=cfg.seed, play_steps=cfg.play_steps)
explorer

# %% [markdown]
# A run of each policy on the explorer's task (the same thing *Play* does), with the exact expected
# episode returns of the oracle and the random policy for reference:

# %%
rows = []
policies = ["oracle", "random", "q_ucb", "model_based"]
if explorer.policy.value == "omnirl":  # a shipped model covers this many states
    policies.insert(0, "omnirl")
for name in policies:
    res = explorer.play(name, steps=cfg.play_steps, seed=cfg.seed)
    rows.append(f"| {name} | {res.steps} | {res.total_return:.3f} | {len(res.episode_returns)} | "
                f"{res.mean_episode_return:.3f} |")
display(Markdown("| policy | steps | return over the run | finished episodes | mean episode return |\n"
                 "|---|---|---|---|---|\n" + "\n".join(rows)
                 + f"\n\nExact expected episode return: oracle {res.oracle_return:.3f}, "
                 f"random {res.random_return:.3f}."))
explorer.play_and_show()
save(explorer.trajectory_figure, "explorer_trajectory")

# %% [markdown]
# The shipped OmniRL-tiny in *Play* on a bandit (`ns = 1`): each pull is an episode; over the run it should
# settle on the best arm (the oracle's action), learning only from the rewards in its memory.

# %%
bandit_explorer = TaskExplorer(ns=1, na=cfg.na, seed=cfg.seed, play_steps=400)
res = bandit_explorer.play()  # the default policy here is the shipped model
best = bandit_explorer.oracle_actions[0]
quarters = [(res.actions[i * 100:(i + 1) * 100] == best).mean() for i in range(4)]
print(f"policy {res.policy}: share of pulls on the best arm per 100 pulls: "
      + ", ".join(f"{q:.2f}" for q in quarters))
bandit_explorer.play_and_show()
save(bandit_explorer.trajectory_figure, "explorer_bandit_omnirl")

# %% [markdown]
# ## 4. Statistics: our sampler against the reference
# For each `ns` in the configuration we draw `stats_tasks_per_ns` tasks and compute per-task statistics
# (`omnirl_core.world.stats.task_statistics`): terminal count, goal fraction, episode limit, successors per
# `(s, a)`, start states, mean and spread of `E[r|s,a]`, mean noise, and the exact episode returns of the
# oracle (gamma 0.994) and of the random policy. The reference numbers were measured on Xenoverse's
# sampler (its seeds, its task counts). `z` is the difference of means in standard errors; with ~20 tasks
# per ns, |z| up to about 2-3 is what sampling noise alone gives, and heavy-tailed statistics (returns,
# reward spread) fluctuate more.

# %%
reference = stats.load_reference_statistics()
per_ns_rows, ours_summary = {}, {}
for ns in cfg.stats_ns:
    seeds = [cfg.seed * 100_000 + i for i in range(cfg.stats_tasks_per_ns)]
    per_ns_rows[ns] = [stats.task_statistics(anymdp.sample_anymdp(ns, cfg.na, seed=s)) for s in seeds]
    ours_summary[f"ns{ns}"] = stats.summarise(per_ns_rows[ns])

with open(out_dir / "task_stats.csv", "w", newline="") as fh:
    keys = list(next(iter(per_ns_rows.values()))[0])
    writer = csv.writer(fh)
    writer.writerow(["ns", "task"] + keys)
    for ns, rows_ in per_ns_rows.items():
        for i, r in enumerate(rows_):
            writer.writerow([ns, i] + [r[k] for k in keys])
(out_dir / "task_stats_summary.json").write_text(json.dumps(ours_summary, indent=1))

for ns in cfg.stats_ns:
    key = f"ns{ns}"
    if key in reference:
        table = views.markdown_stat_table(ours_summary[key], reference[key], stats=stats.REFERENCE_STATISTICS)
        display(Markdown(f"**ns = {ns}** ({cfg.stats_tasks_per_ns} tasks here, {reference[key]['n_tasks']} "
                         f"in the reference)\n\n{table}"))
    else:
        display(Markdown(f"**ns = {ns}**: no reference numbers for this size"))

# %%
common = {k: v for k, v in ours_summary.items() if k in reference}
if common:
    save(views.plot_stat_comparison(common, {k: reference[k] for k in common}, stats=stats.REFERENCE_STATISTICS,
                                  labels=("ours", "reference")), "stats_vs_reference")

# %% [markdown]
# ## 5. Oracle vs random returns
# Each point is one task: the exact expected episode return of the uniform-random policy (x) and of the
# oracle (y), both computed by dynamic programming over the task's step limit (the reference's
# convention: `floor(max_steps)` steps). The acceptance check compares discounted values at
# `gamma = 2^(-1/ns)`, not these undiscounted returns, so a rare task can sit near the diagonal; for bandits
# the "oracle" is the best arm.

# %%
returns = {
    ns: ([r["ret_oracle"] for r in rows_], [r["ret_random"] for r in rows_]) for ns, rows_ in per_ns_rows.items()
}
save(views.plot_oracle_vs_random(returns), "oracle_vs_random")
display(Markdown("| ns | mean oracle return | mean random return | oracle > random |\n|---|---|---|---|\n" + "\n".join(
    f"| {ns} | {np.mean(o):.3f} | {np.mean(r):.3f} | {np.mean(np.array(o) > np.array(r)):.0%} |"
    for ns, (o, r) in returns.items())))

# %% [markdown]
# ## 6. Sampling time
# Wall-clock seconds to draw one accepted task (all rejections included), `timing_repeats` seeds per
# `ns`, against the median the reference sampler needed on this kind of machine (one core). The
# reference spends almost all its time in a slow value-iteration loop; ours solves the candidates'
# MDPs by batched policy iteration.

# %%
timings = {}
for ns in cfg.timing_ns:
    timings[ns] = []
    for rep in range(cfg.timing_repeats):
        t0 = time.perf_counter()
        anymdp.sample_anymdp(ns, cfg.na, seed=cfg.seed * 1000 + rep)
        timings[ns].append(time.perf_counter() - t0)
ref_times = {int(k[2:]): v["sample_seconds_median"] for k, v in reference.items()
             if k.startswith("ns") and isinstance(v, dict) and "sample_seconds_median" in v and k != "ns1"}
with open(out_dir / "sampling_times.csv", "w", newline="") as fh:
    writer = csv.writer(fh)
    writer.writerow(["ns", "repeat", "seconds"])
    for ns, ts in timings.items():
        writer.writerows([ns, i, t] for i, t in enumerate(ts))
display(Markdown("| ns | ours median (s) | reference median (s) |\n|---|---|---|\n" + "\n".join(
    f"| {ns} | {np.median(ts):.3f} | {ref_times.get(ns, float('nan')):.3f} |" for ns, ts in timings.items())))
save(views.plot_timings(timings, ref_times), "sampling_times")

# %%
print("outputs written to", out_dir.resolve())
print(sorted(p.name for p in out_dir.iterdir()))
