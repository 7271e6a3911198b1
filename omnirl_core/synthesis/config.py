"""Configuration of data synthesis (notebook 02, Algorithm 2): the behaviour mixture, one dataset, the notebook.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass

from ..workbook.fields import STATE_COUNT, check, param
from .registry import BEHAVIOUR_REGISTRY

DATASET_NAME = re.compile(r"[A-Za-z0-9_.-]+")
"""What a dataset's name may be: it is the dataset's folder name under DATA_DIR."""
SHARD_MEMORY_LIMIT = 16 * 2**30
"""Memory one synthesis worker may need for one shard (its tasks and its steps), checked up front."""


def shard_memory_bytes(cfg: DatasetConfig) -> int:
    """Rough peak memory of one worker writing one shard of ``cfg``: every task of the shard (drawn together;
    transition matrices float64 [ns, na, ns], with room for the sampler's and the oracle's temporaries) and the
    shard's step arrays (about 16 bytes a step while they are built)."""
    ns = cfg.ns_max if cfg.ns_max is not None else cfg.ns
    n = min(cfg.sequences_per_shard, cfg.n_sequences)
    return 4 * n * ns * cfg.na * ns * 8 + 16 * n * cfg.seq_len


@dataclass
class MixtureConfig:
    """Behaviour mixture of decoupled policy distillation (paper section 2); defaults are the paper's."""

    w_drift_random: float = param(0.10, ge=0)
    "Weight of the drifting random softmax policy (tag 6)."
    w_model_based: float = param(0.10, ge=0)
    "Weight of the model-based learner with optimism bonus and decaying noise (tag 4, noise tag 6)."
    w_q_learning: float = param(0.10, ge=0)
    "Weight of the Q-learner with decaying noise (tag 5, noise tag 6)."
    w_mb_oracle: list[float] = param([0.10, 0.10, 0.10, 0.10], ge=0, min_len=4, max_len=4)
    "Weights of the model-based learner mixed with oracle_i, i = 0..3 (oracle gammas 0, 0.5, 0.93, 0.994)."
    w_noisy_oracle: list[float] = param([0.10, 0.10], ge=0, min_len=2, max_len=2)
    "Weights of the epsilon-noisy oracles with gamma 0.93 and 0.994."
    w_oracle: list[float] = param([0.02, 0.03, 0.05], ge=0, min_len=3, max_len=3)
    "Weights of the pure oracles with gamma 0.5, 0.93 and 0.994."
    weights: dict[str, float] = param({})
    ("Weights by behaviour name, added to or overriding the w_* fields: any registered behaviour, plug-ins included "
     "(python -m omnirl_core.synthesis --list-behaviours).")
    switch_fraction: float = param(0.85, ge=0, le=1)
    "Fraction of sequences whose behaviour may be re-drawn at episode ends."
    switch_prob: float = param(0.2, ge=0, le=1)
    "Probability of re-drawing the behaviour at each episode end (in those sequences)."
    seq_mask_prob: float = param(0.15, ge=0, le=1)
    "Probability that every tag of a sequence is set to 7 (unknown)."
    episode_mask_prob: float = param(0.15, ge=0, le=1)
    "Probability that every tag of an episode is set to 7 (unknown), independently per episode."
    learner_noise_prob: float = param(0.5, ge=0, le=1)
    "Probability that a sequence's learner (drawn per learner) is in the noisy branch, else the noise-free one."
    learner_noise_range: list[float] = param([0.1, 0.5], ge=0, le=1, min_len=2, max_len=2)
    "Range of the initial noise probability of a noisy learner (uniform)."
    learner_noise_decay: float = param(0.1, ge=0)
    "Noise decays per step by U(0, learner_noise_decay / (ns * na))."
    learner_c_base: float = param(0.005, ge=0)
    "Model-based bonus scale c: exactly this in the noise-free branch, this * Exp(1) in the noisy branch."
    learner_alpha_base: float = param(0.01, gt=0)
    "Q-learner step-size scale alpha: exactly this in the noise-free branch, this * Exp(1) in the noisy branch."
    learner_gamma_range: list[float] = param([0.90, 0.99], ge=0, lt=1, min_len=2, max_len=2)
    "Range of a learner's discount in the noise-free branch (uniform)."
    learner_noisy_gamma: float = param(0.99, ge=0, lt=1)
    "Discount of a learner in the noisy branch."
    mb_oracle_random_start: list[float] = param([0.0, 1.0], min_len=2, max_len=2)
    "Range of the initial random-action probability of the model-based + oracle mixture."
    mb_oracle_random_floor: list[float] = param([-0.5, 0.5], min_len=2, max_len=2)
    "Range of the floor the random-action probability decays to (negative acts as 0)."
    mb_oracle_oracle_start: list[float] = param([-2.0, -0.5], min_len=2, max_len=2)
    "Range of the initial oracle probability (negative acts as 0)."
    mb_oracle_oracle_cap: list[float] = param([0.0, 0.2], min_len=2, max_len=2)
    "Range of the cap the oracle probability rises to."
    mb_oracle_rate: float = param(0.1, ge=0)
    "Both probabilities move per step by U(0, mb_oracle_rate / (ns * na))."
    noisy_oracle_decay: float = param(1.0, ge=0)
    "Epsilon of a noisy oracle starts at 1 and decays per step by U(0, noisy_oracle_decay / (ns * na))."
    drift_logit_scale: float = param(2.0, ge=0)
    "Mean of the exponential scale of the drifting policy's initial logits."
    drift_scale: float = param(1e-5, ge=0)
    "Mean of the exponential scale of the drifting policy's per-step perturbation."
    q_rule: str = param("softmax", choices=("softmax", "ucb"))
    "Exploration rule of the Q-learner behaviour (alpha is used by the softmax rule only)."
    q_noisy_horizon_min: int = param(100, ge=1)
    "Q-learner horizon H: the sequence length T, or U(this, T) in the noisy branch."
    mb_oracle_gamma: float = param(0.99, ge=0, lt=1)
    "Discount of the model-based learner inside the mb_oracle mixtures."
    mb_oracle_c: float = param(0.005, ge=0)
    "Bonus scale c of the model-based learner inside the mb_oracle mixtures."

    def validate(self) -> None:
        for name, w in self.weights.items():
            names = BEHAVIOUR_REGISTRY.names()
            close = difflib.get_close_matches(str(name), names, n=1, cutoff=0.8)
            check(name in BEHAVIOUR_REGISTRY, f"weights.{name}", name,
                  (f"a registered behaviour (did you mean {close[0]!r}?): " if close else "a registered behaviour: ")
                  + f"{', '.join(names)} ({BEHAVIOUR_REGISTRY.hint})")
            check(w >= 0, f"weights.{name}", w, ">= 0")
        for key in ("learner_noise_range", "learner_gamma_range", "mb_oracle_random_start", "mb_oracle_random_floor",
                    "mb_oracle_oracle_start", "mb_oracle_oracle_cap"):
            lo, hi = getattr(self, key)
            check(lo <= hi, key, [lo, hi], "[low, high] with low <= high")


@dataclass
class DatasetConfig:
    """One synthesised dataset: everything that determines its bytes (with the seed)."""

    seed: int = param(0, ge=0)
    "Base seed; shard k is a pure function of (this config, seed, k)."
    preset: str = param("dpd", choices=("dpd", "ad", "ad_eps", "dpt", "no_tags"))
    "Data strategy: dpd (paper mixture), ad, ad_eps, dpt, no_tags (dpd with every tag 7)."
    tags: bool = param(True)
    "Steps carry the acting behaviour's tag; false: every tag is 7 (unknown), whatever the preset."
    task_source: str = param("anymdp", choices=("anymdp", "garnet"))
    "Task family of the sequences."
    ns: int = param(16, rule=STATE_COUNT)
    "Number of states (the lower end of the range when ns_max is set)."
    ns_max: int | None = param(None, rule=STATE_COUNT)
    "If set, each shard draws its ns uniformly from [ns, ns_max] (D_Large: 16..128)."
    na: int = param(5, ge=2, le=254)
    "Number of actions."
    garnet_branching: int = param(2, ge=1)
    "Successors per (s, a) of Garnet tasks."
    task_pool: int | None = param(None, ge=1)
    "If set, sequences draw their task from a fixed pool of this many distinct tasks (task-count ablation)."
    seq_len: int = param(8192, ge=2)
    "Steps per sequence T (boundary steps included)."
    n_sequences: int = param(131072, ge=1)
    "Number of sequences in the dataset."
    sequences_per_shard: int = param(256, ge=1)
    "Sequences per shard file set (the last shard may hold fewer)."
    batch_size: int = param(128, ge=1)
    "Sequences advanced together as arrays (part of the data's identity)."
    label_gamma: float = param(0.994, gt=0, lt=1)
    "Discount of the label oracle."
    process: str = param("reference", choices=("reference",))
    ("The synthesis process: reference, the reference's (omnirl_core.synthesis); datasets of the package's earlier "
     "process are rebuilt by the git tag their recipe names.")
    engine: str = param("numba", choices=("numba", "numpy"))
    "Simulation engine: compiled per-sequence loop (numba) or numpy arrays over the batch (same process)."
    mixture: MixtureConfig = param(MixtureConfig())
    "Behaviour mixture, schedules and tag masking."

    @property
    def tagless(self) -> bool:
        """Every step's tag is 7 (unknown): ``tags`` false, or the ``no_tags`` preset (dpd with tags false)."""
        return not self.tags or self.preset == "no_tags"

    def validate(self) -> None:
        if self.preset in ("dpd", "no_tags"):  # the presets that draw behaviours by the mixture's weights
            weights = {k: v for k, v in vars(self.mixture).items() if k.startswith("w_")}
            total = sum(sum(v) if isinstance(v, (list, tuple)) else v for v in weights.values())
            total = total + sum(self.mixture.weights.values())
            check(total > 0, "mixture", "all behaviour weights 0",
                  f"at least one weight > 0 ({', '.join(weights)}): the {self.preset} preset draws behaviours by them")
        if self.ns_max is not None:
            check(self.ns_max >= self.ns, "ns_max", self.ns_max, f">= ns ({self.ns})")
            check(self.task_pool is None, "task_pool", self.task_pool, "unset when ns_max is set (a pool has one ns)")
        check(self.ns <= 65535, "ns", self.ns, "<= 65535 (observations are stored as uint16)")
        check((self.ns_max or 0) <= 65535, "ns_max", self.ns_max, "<= 65535 (observations are stored as uint16)")
        check(self.task_source != "garnet" or self.ns >= 8, "ns", self.ns, ">= 8 for Garnet tasks (no Garnet bandit)")
        check(self.task_source != "garnet" or self.garnet_branching <= self.ns, "garnet_branching",
              self.garnet_branching, f"<= ns ({self.ns}): a Garnet state has at most ns successors")
        need = shard_memory_bytes(self)
        check(need <= SHARD_MEMORY_LIMIT, "sequences_per_shard", self.sequences_per_shard,
              f"small enough for one shard to fit in {SHARD_MEMORY_LIMIT / 2**30:g} GiB per worker (this needs "
              f"about {need / 2**30:.1f} GiB: its tasks, sequences_per_shard * ns^2 * na * 8 bytes * 4, plus its "
              "steps); lower sequences_per_shard, ns or ns_max")


@dataclass
class SynthesisConfig:
    """Notebook 02: synthesise datasets by decoupled policy distillation and look at them."""

    datasets: dict[str, DatasetConfig] = param({"d_small": DatasetConfig()})
    "Datasets to synthesise, by name (each goes to DATA_DIR/<name>)."
    data_dir: str = param("data")
    "Where datasets go, relative to the run folder (or absolute)."
    workers: int = param(2, ge=1)
    "Worker processes (does not change the data)."
    force: bool = param(False)
    ("Start even when a dataset needs more than the free disk or the workers exceed 2 per core of this machine "
     "(refused before any work otherwise).")
    show_sequences: int = param(3, ge=0)
    "Sequences drawn in the look at the data."
    show_steps: int = param(300, ge=10)
    "Steps of each sequence drawn."
    curve_bins: int = param(16, ge=2)
    "Bins along the sequence for the per-tag reward curves."
    loader_batch: int = param(8, ge=1)
    "Batch size of the loader demonstration."
    loader_chunk: int = param(512, ge=1)
    "Chunk length of the loader demonstration."

    def validate(self) -> None:
        for name in self.datasets:  # each goes to DATA_DIR/<name>: a plain folder name, never a path
            check(bool(DATASET_NAME.fullmatch(str(name))) and name not in (".", ".."), "datasets", name,
                  "dataset names that are plain folder names (letters, digits, '.', '_', '-'; not '', '.' or '..')")
