"""Configuration of notebook 04 (evaluation): suites, agents, OmniRL's modes and checkpoint, episode budgets.
"""

from __future__ import annotations

from dataclasses import dataclass, field

AGENT_CHOICES = ("random", "oracle", "tql_ucb", "omnirl", "ppo", "cql")
TQL_SCORINGS = ("test", "training")
MODE_CHOICES = ("online", "offline", "imitation")


# ---------------------------------------------------------------------------------------------- configuration
@dataclass
class LongContextConfig:
    """Label loss and online score against log(context length), for each model in ``checkpoints``."""

    enabled: bool = False
    "Run the long-context evaluation (notebook 04, section 6)."
    steps: int = 16384
    "Context length: steps of every loss sequence and of every online run (paper: 1,048,576)."
    suite: str = "anymdp_1"
    "Suite of the online runs; its ns is also the ns of the loss sequences."
    n_tasks: int = 4
    "Tasks of the online runs (the suite's first test tasks)."
    loss_sequences: int = 2
    "DPD sequences synthesised for the loss curve (on tasks never trained on)."
    bins: int = 12
    "Log-spaced bins of the context length."
    chunk_len: int = 2048
    "Steps per forward chunk of the loss pass (the memory is carried across chunks)."
    checkpoints: list[str] = field(
        default_factory=lambda: ["03_training/run/model.safetensors", "03_training/post/model.safetensors"])
    "Models compared: run-folder paths (or absolute); a missing one is skipped with a note."

    def validate(self) -> None:
        from ..workbook import check
        from .suites import SUITE_NAMES

        check(self.steps >= 16, "steps", self.steps, ">= 16")
        check(self.suite in SUITE_NAMES, "suite", self.suite, "one of " + ", ".join(SUITE_NAMES))
        for key in ("n_tasks", "loss_sequences", "chunk_len"):
            check(getattr(self, key) >= 1, key, getattr(self, key), ">= 1")
        check(self.bins >= 2, "bins", self.bins, ">= 2")
        check(len(self.checkpoints) >= 1, "checkpoints", self.checkpoints, "at least one model")


@dataclass
class IncontextConfig:
    """Notebook 04, section 5: the in-context measure (:func:`omnirl_core.evaluation.incontext.online_gain`) of
    every OmniRL model beside TQL-UCB, on unseen tasks, from an empty memory."""

    enabled: bool = True
    "Measure the in-context gain (section 5)."
    suites: list[str] = field(default_factory=lambda: ["anymdp_1"])
    "Suites measured; a model that cannot read a suite is skipped there with a note."
    n_tasks: int = 64
    "Unseen tasks per suite (64 gives a half-width of about 0.1 on bandits)."
    steps: int = 400
    "Environment steps per task, from an empty memory."
    bins: int = 6
    "Log-spaced bins of the run (octaves; the gain is the last bin minus the first)."

    def validate(self) -> None:
        from ..workbook import check
        from .suites import SUITE_NAMES

        for name in self.suites:
            check(name in SUITE_NAMES, "suites", name, "one of " + ", ".join(SUITE_NAMES))
        check(self.n_tasks >= 2, "n_tasks", self.n_tasks, ">= 2 (an interval over tasks)")
        check(self.bins >= 2, "bins", self.bins, ">= 2")
        check(self.steps >= self.bins, "steps", self.steps, f">= bins ({self.bins})")


@dataclass
class EvaluationConfig:
    """Notebook 04: evaluate OmniRL and the baselines on the test suites; Table-1 style report."""

    seed: int = 0
    "Base seed of the runs (environments and agents); test tasks use their own fixed seed space."
    suites: list[str] = field(default_factory=lambda: ["anymdp_16", "frozenlake", "darkroom_6"])
    "Suites to evaluate (omnirl_core.evaluation.suites.SUITE_NAMES)."
    n_tasks: int = 8
    "Tasks per AnyMDP / Garnet suite; parallel runs for the single Gymnasium tasks, Pendulum and DarkRoom."
    n_episodes: int = 50
    "Episode budget per run of OmniRL (and CQL's scoring; the paper: 10,000); the baselines take baseline_episodes."
    baseline_episodes: int | None = None
    "Episode budget per run of random, oracle, TQL-UCB and PPO (the paper: 10,000; null: n_episodes)."
    simulated_baseline_episodes: int | None = None
    "Budget of random, oracle and TQL-UCB on suites without tabular tables (Pendulum; null: baseline_episodes)."
    max_steps: int | None = None
    "Optional cap on the batched steps of a run (None: until every run has its episodes)."
    agents: list[str] = field(default_factory=lambda: ["random", "oracle", "tql_ucb"])
    "Agents: random, oracle, tql_ucb, omnirl (needs checkpoint), ppo (needs stable-baselines3), cql (needs d3rlpy)."
    tql_c_grid: list[float] = field(default_factory=lambda: [0.1, 0.5, 2.0])
    "UCB bonus scales tried for TQL-UCB per suite; the best (by best average score) is reported."
    tql_H_grid: list[float] = field(default_factory=lambda: [4000.0])
    "Step-size horizons H of TQL-UCB (step size (H + 1) / (H + N)) tried with every c; the best pair is reported."
    tql_gamma: float = 0.99
    "Discount of TQL-UCB."
    tql_scoring: str = "test"
    "TQL-UCB's curve: test (greedy test episodes after every tql_eval_every training episodes, the paper) or training."
    tql_eval_every: int = 10
    "TQL-UCB is tested after every this many training episodes (the paper: 100; at most n_episodes)."
    ppo_eval_every: int = 100
    "PPO is tested after every this many training episodes (the paper: 100; at most n_episodes)."
    ppo_lr_grid: list[float] = field(default_factory=lambda: [3e-4])
    "PPO learning rates tried per suite (with every ppo_ent_grid value); the best setting is reported."
    ppo_ent_grid: list[float] = field(default_factory=lambda: [0.01])
    "PPO entropy coefficients tried per suite (with every ppo_lr_grid value)."
    ppo_deterministic: bool = True
    "PPO's test episodes play its most probable action (false: sample its policy)."
    ppo_tune_tasks: int = 0
    ("Held-out tasks PPO's grid runs on (AnyMDP / Garnet: other test tasks; other suites: the same environments "
     "with other seeds), then only the chosen setting runs on the reported tasks; 0: the grid runs on the reported "
     "tasks.")
    ppo_processes: int = 1
    ("Worker processes PPO's runs (one per task and setting) are spread over, one core each; the results are those "
     "of one process.")
    eval_episodes: int = 5
    "Test episodes per test point of TQL-UCB and PPO (the paper: 5)."
    cql_steps: int = 2000
    "Minibatch updates of CQL on each run's offline demonstrations (demo_episodes of the perturbed oracle)."
    checkpoint: str | None = "shipped"
    "OmniRL checkpoint (.pt/.safetensors; relative: run folder, then repo); 'shipped': models/ per suite; None: skip."
    post_checkpoint: str | None = None
    ("Notebook 03's post-trained model (its long-context stage on D_Long), scored beside checkpoint as rows "
     "'OmniRL (post-trained)'; relative: run folder, then repo; null: none.")
    also_shipped: bool = False
    "Also run, beside the checkpoint, the shipped model covering each suite (rows 'OmniRL-tiny (shipped)')."
    modes: list[str] = field(default_factory=lambda: ["online"])
    "OmniRL modes: online, offline (perturbed-oracle demonstrations), imitation (oracle demonstrations)."
    demo_episodes: int = 10
    "Demonstration episodes per run in the offline and imitation modes (the paper: 100)."
    demo_noise: float = 0.3
    "Random-action probability of the perturbed oracle (offline mode)."
    temperature: float = 0.5
    "Sampling temperature of OmniRL."
    temperature_schedule: str = "constant"
    "constant, or decay (1.0 -> 0.1 linearly over 10K steps of a run)."
    smooth: int = 5
    ("Window of the Table-1 score curves, in evaluated episodes: that many episodes of OmniRL, ceil(smooth / "
     "eval_episodes) test points of TQL-UCB, PPO and the random and oracle rows (one rule for every agent).")
    smooth_tested: int | None = None
    ("Override: the window of curves of test points in training episodes (1000: the test points of 1,000 "
     "training episodes); null: the rule of smooth.")
    pendulum_samples: int = 100
    "Sampled states per (bin, torque) for the Pendulum model behind its oracle."
    pendulum_reference_episodes: int = 32
    "Monte-Carlo episodes for Pendulum's R_oracle and R_random."
    pendulum_start: str = "random"
    ("Pendulum's start state: random (a fresh draw every episode) or reference (every episode from the state of "
     "Gymnasium's reset(seed=123), as the reference evaluation; R_oracle and R_random measured from it).")
    device: str = "cpu"
    "Torch device of the OmniRL model."
    devices: list[int] = field(default_factory=list)
    "GPUs to spread the suites over (one process per device at a time, needs a checkpoint path); empty: the CPU."
    cpu_processes: int = 1
    ("Without devices: processes on this machine's CPU to spread the suites and the long-context models over, one "
     "core each (2 on a 2-core machine: the evaluation runs on one thread and would leave the second core idle).")
    torch_threads: int | None = 1
    "Torch CPU threads while OmniRL acts (single-token steps run fastest on one thread); null keeps torch's."
    progress: bool = True
    "Show progress bars."
    incontext: IncontextConfig = field(default_factory=IncontextConfig)
    "The in-context measure on unseen tasks, section 5: score along the run in log-spaced bins, the gain."
    long_context: LongContextConfig = field(default_factory=LongContextConfig)
    "Label loss, online score and policy entropy against log(context length), section 6 (off unless enabled)."

    def baseline_budget(self, tabular: bool = True) -> int:
        """Episodes per run of the baselines on a suite with tabular tables (``tabular``) or a simulated one."""
        base = self.baseline_episodes if self.baseline_episodes is not None else self.n_episodes
        if not tabular and self.simulated_baseline_episodes is not None:
            return int(self.simulated_baseline_episodes)
        return int(base)

    def validate(self) -> None:
        from ..workbook import check
        from .gym_tasks import PENDULUM_STARTS
        from .suites import SUITE_NAMES

        check(len(self.suites) >= 1, "suites", self.suites, "at least one suite")
        for i, s in enumerate(self.suites):
            check(s in SUITE_NAMES, f"suites[{i}]", s, "one of " + ", ".join(SUITE_NAMES))
        for i, a in enumerate(self.agents):
            check(a in AGENT_CHOICES, f"agents[{i}]", a, "one of " + ", ".join(AGENT_CHOICES))
        for i, m in enumerate(self.modes):
            check(m in MODE_CHOICES, f"modes[{i}]", m, "one of " + ", ".join(MODE_CHOICES))
        check(self.seed >= 0, "seed", self.seed, ">= 0")
        check(self.n_tasks >= 1, "n_tasks", self.n_tasks, ">= 1")
        check(self.n_episodes >= 1, "n_episodes", self.n_episodes, ">= 1")
        check(self.max_steps is None or self.max_steps >= 1, "max_steps", self.max_steps, ">= 1 or null")
        check(all(c >= 0 for c in self.tql_c_grid) and len(self.tql_c_grid) >= 1, "tql_c_grid", self.tql_c_grid,
              "at least one value, each >= 0")
        check(0 <= self.tql_gamma < 1, "tql_gamma", self.tql_gamma, "in [0, 1)")
        check(self.tql_scoring in TQL_SCORINGS, "tql_scoring", self.tql_scoring, "one of " + ", ".join(TQL_SCORINGS))
        for key in ("baseline_episodes", "simulated_baseline_episodes"):
            check(getattr(self, key) is None or getattr(self, key) >= 1, key, getattr(self, key), ">= 1 or null")
        check(all(h > 0 for h in self.tql_H_grid) and len(self.tql_H_grid) >= 1, "tql_H_grid", self.tql_H_grid,
              "at least one value, each > 0")
        check(all(x >= 0 for x in self.ppo_lr_grid + self.ppo_ent_grid) and self.ppo_lr_grid and self.ppo_ent_grid,
              "ppo_lr_grid", self.ppo_lr_grid + self.ppo_ent_grid, "at least one value each, all >= 0")
        simulated = any(s.startswith("pendulum") for s in self.suites)  # the suites without tabular tables
        budget = min(self.baseline_budget(True), self.baseline_budget(not simulated))
        tested = self.tql_scoring == "test" and any(a in self.agents for a in ("random", "oracle", "tql_ucb"))
        check(self.tql_eval_every >= 1 and (not tested or self.tql_eval_every <= budget),
              "tql_eval_every", self.tql_eval_every, f">= 1 and at most the baselines' episode budget ({budget})")
        check(self.ppo_eval_every >= 1 and ("ppo" not in self.agents or self.ppo_eval_every <= self.baseline_budget()),
              "ppo_eval_every", self.ppo_eval_every, f">= 1 and at most the baselines' episode budget "
              f"({self.baseline_budget()})")
        check(self.ppo_tune_tasks >= 0, "ppo_tune_tasks", self.ppo_tune_tasks,
              ">= 0 (held-out tasks to tune PPO on; 0: tune on the reported tasks)")
        check(self.ppo_processes >= 1, "ppo_processes", self.ppo_processes, ">= 1 (1: PPO runs in this process)")
        check(self.eval_episodes >= 1, "eval_episodes", self.eval_episodes, ">= 1")
        check(self.cql_steps >= 1, "cql_steps", self.cql_steps, ">= 1")
        check("cql" not in self.agents or self.demo_episodes >= 1, "demo_episodes", self.demo_episodes,
              ">= 1 when cql is among the agents (its training data)")
        check(self.demo_episodes >= 0, "demo_episodes", self.demo_episodes, ">= 0")
        check(0 <= self.demo_noise <= 1, "demo_noise", self.demo_noise, "in [0, 1]")
        check(self.temperature > 0, "temperature", self.temperature, "> 0")
        check(self.temperature_schedule in ("constant", "decay"), "temperature_schedule", self.temperature_schedule,
              "constant or decay")
        check(self.smooth >= 1, "smooth", self.smooth, ">= 1")
        check(self.smooth_tested is None or self.smooth_tested >= 1, "smooth_tested", self.smooth_tested,
              ">= 1 or null")
        check(self.torch_threads is None or self.torch_threads >= 1, "torch_threads", self.torch_threads,
              ">= 1 or null")
        check(self.cpu_processes >= 1, "cpu_processes", self.cpu_processes, ">= 1")
        check(self.pendulum_samples >= 1, "pendulum_samples", self.pendulum_samples, ">= 1")
        check(self.pendulum_reference_episodes >= 2, "pendulum_reference_episodes",
              self.pendulum_reference_episodes, ">= 2")
        check(self.pendulum_start in PENDULUM_STARTS, "pendulum_start", self.pendulum_start,
              "one of " + ", ".join(PENDULUM_STARTS))
