"""Data synthesis by decoupled policy distillation (paper section 2, Algorithm 2): sharded, resumable, vectorised.

A dataset is ``n_sequences`` sequences of exactly ``seq_len`` (T) steps, each sequence on one task. Per step we
store the observation ``obs`` (the task's ``state_mapping`` of the inner state), the tag ``tag`` (0-7, see
:data:`TAG_NAMES`), the executed action ``action`` (``na`` on a boundary step), the reward ``reward`` and the
label ``label`` (the action of the oracle at gamma 0.994 on the true task; :data:`LABEL_MASKED` = 255 where the
label is masked out of the loss), plus ``behaviour``, the id of the behaviour that acted (:data:`BEHAVIOURS`,
255 on boundary steps) for analysis. Per sequence: ``learner_params`` (float64 [n, len(LEARNER_PARAMS)], the
hyperparameters drawn for the sequence's learners, columns :data:`LEARNER_PARAMS`, also named in the manifest
and in each shard.json), ``ns``, ``na``, ``task_seed`` and ``task_index``: the
AnyMDP tasks of a shard are drawn together by ``sample_anymdp_batch(n, ns, na, seed=task_seed)`` (the sequence's
task is entry ``task_index``); Garnet tasks and members of a task pool by ``sample_garnet`` /
``sample_anymdp`` with their own ``task_seed``. :func:`shard_tasks` rebuilds the tasks of a shard.

Boundary step: after every terminated or truncated step one extra step is stored with the observation of the
state the episode ended in, action ``na``, reward 0, tag 7 and a masked label. Boundary steps count toward T;
the last episode is cut at T.

Behaviour mixture (preset ``dpd``; weights and schedules in :class:`~omnirl_core.synthesis.config.MixtureConfig`): per
sequence a behaviour is drawn from the weights; in ``switch_fraction`` of the sequences it is re-drawn with
probability ``switch_prob`` at each episode end. Tags: the acting component's tag (oracle i -> i, model-based 4,
Q 5, any random action 6); all tags of a sequence become 7 with probability ``seq_mask_prob``, those of an
episode with ``episode_mask_prob``.

The process is the reference's ``gen_anymdp_record.py``: every behaviour solver is built once per sequence and
updated at every step, whichever behaviour acts. So (a) each behaviour's schedules (the noisy oracle's epsilon, a
noisy learner's noise, the mb_oracle mixtures' random and oracle shares) are drawn once per sequence and run on one
clock, the environment steps since the sequence start: a behaviour switched in late finds its epsilon already
decayed; (b) the drifting random policy's table P0 and its transfer matrix M = clip(I + e2 N(0, 1), 0, 1) (rows
normalised) are drawn once per sequence, and the table is P0 M^k at env step k, whoever acts (:mod:`.drifting`);
(c) every learner learns from every executed transition, and the mb_oracle mixtures' model-based learner is a
solver of its own, with ``mb_oracle_gamma`` 0.99 and ``mb_oracle_c`` 0.005 (the ``model_based`` behaviour's
learner has the drawn values below); (d) in a mixture the random draw comes first and the oracle acts with
probability (1 - p_random) * p_oracle; (e) the Q-learner's horizon H is the sequence length T
(U(``q_noisy_horizon_min``, T) in the noisy branch); (f) with ``ns_max`` set (D_Large), each task's observation
ids are a random subset of 0 .. ns_max - 1, so a model never learns that small tasks use small ids.

Behaviours are a name-keyed registry (:mod:`.behaviours`): the fourteen built-ins, and plug-ins that outside code
adds with :func:`register_behaviour` (an act rule of its own, run by the numpy engine) and weights by name
(``mixture.weights``). Each behaviour's schedule draws, and a plug-in's actions, come from a random stream keyed by
its name; the learners' hyperparameters from the stream ``learners`` (:mod:`.schedules`, both engines): adding a
behaviour with weight 0 leaves every byte of a dataset as it was.

Learner hyperparameters (paper section 2, after the reference's behaviour solvers): each learner of a sequence
(its Q-learner and its model-based learner, independently) is drawn once, at the start of the sequence, in one
of two branches. With probability ``1 - learner_noise_prob`` the noise-free branch: gamma ~
U(``learner_gamma_range``), c = ``learner_c_base`` (model-based) or alpha = ``learner_alpha_base`` (Q), no
noise. Otherwise the noisy branch: gamma = ``learner_noisy_gamma``, c = ``learner_c_base`` * Exp(1) or alpha =
``learner_alpha_base`` * Exp(1) (Exp(1) draws floored at 1e-12 so that alpha stays positive), and a random-action
probability starting at U(``learner_noise_range``) and decaying per step by U(0, ``learner_noise_decay`` /
(ns * na)) (tag 6 where the noise acts, the learner's tag otherwise). The model-based bonus keeps its form
c / (1 - gamma) * max(std, 0.01) / sqrt(N + 1). A noisy learner's noise applies whenever its own behaviour
(``model_based`` or ``q_learning``) acts; ``q_learning_pure`` (preset ``ad``) acts without noise. The Q-learner's
alpha is its step-size scale under the softmax rule (the UCB rule has its own step size and bonus scale 1).

Simplifications (documented, deliberate): the D_Large ns range is drawn per shard (all sequences of a shard share
ns so that they advance as one batch), which gives the same ns distribution over the dataset, and the training
reader (:class:`SequenceDataset`) interleaves the sequences of all shards so that a batch mixes state counts as
independent draws would. The drifting table's rows are brought to step k when read, by cached powers M^(2^j) of
the transfer matrix (exact up to rounding, ``drifting.DriftingTables``).

Presets: ``dpd`` (the mixture above), ``no_tags`` (dpd with every tag 7), ``ad`` (Q-learner behaviour without
noise, labels = its own actions), ``ad_eps`` (noisy oracle gamma 0.994 behaviour, labels = its actions),
``dpt`` (oracle gamma 0.994, Q-learner and uniform random behaviours with equal weights, oracle labels).
``DatasetConfig.tags: false`` sets every tag to 7 on any preset and changes no other byte (the paper's AD, AD-epsilon
and DPT have no tags; ``no_tags`` is ``dpd`` with tags false); it is part of the dataset's identity.

Engines (``DatasetConfig.engine``): ``numba`` (default) runs each sequence step by step in compiled code
(``omnirl_core.synthesis.engine_numba``); ``numpy`` advances a batch of sequences together as arrays with the batched
env and learners of ``omnirl_core.world.envs`` / ``omnirl_core.world.learners``. Both implement the same process; their
random streams differ, so the engine is part of a dataset's identity.

Determinism: shard k is a pure function of (dataset config, seed, k); its RNG is
``SeedSequence([seed, k])``. Shards are written to a temporary folder and renamed into place, then the
manifest is rewritten atomically, so worker count and interruptions do not change a single byte.

Modules: :mod:`.config` (the dataset and mixture parameters), :mod:`.format` (field names, tags, shard folders,
manifest: what the writer and the reader share), :mod:`.behaviours` (the registry, the mixture's weights, named
random streams), :mod:`.schedules` (learner hyperparameters and schedules), :mod:`.drifting` (the drifting random
policy), :mod:`.shards` (which tasks each shard holds), :mod:`.engine_numpy` and :mod:`.engine_numba`
(the two engines), :mod:`.writer` (workers, atomic shards, resume), :mod:`.reader` (:class:`SequenceDataset`),
:mod:`.analysis` (a look at the data), :mod:`.cli` (``python -m omnirl_core.synthesis``).
"""

from .analysis import load_dataset_arrays, reward_curves, tag_statistics
from .behaviours import (
    BEHAVIOUR_REGISTRY,
    BEHAVIOURS,
    ActContext,
    Behaviour,
    behaviour_weights,
    mixture_weights,
    register_behaviour,
    unregister_behaviour,
)
from .config import DatasetConfig, MixtureConfig, SynthesisConfig
from .engine_numpy import synthesize_batch
from .format import (
    BOUNDARY,
    FORMAT,
    LABEL_MASKED,
    LEARNER_PARAMS,
    SCHEMA_VERSION,
    STEP_FIELDS,
    TAG_NAMES,
    TAG_UNKNOWN,
    DatasetError,
    load_manifest,
    load_shard,
    shard_name,
    verify_shard_dir,
    write_json_atomic,
)
from .preflight import check_fits, dataset_bytes, step_bytes
from .reader import SequenceDataset
from .shards import dataset_tasks, shard_plan, shard_tasks, task_for
from .writer import SynthesisError, synthesize, synthesize_shard

__all__ = [
    "DatasetConfig", "MixtureConfig", "SynthesisConfig",
    "BEHAVIOURS", "BOUNDARY", "FORMAT", "LABEL_MASKED", "LEARNER_PARAMS", "SCHEMA_VERSION", "STEP_FIELDS",
    "TAG_NAMES", "TAG_UNKNOWN", "behaviour_weights", "mixture_weights",
    "ActContext", "Behaviour", "BEHAVIOUR_REGISTRY", "register_behaviour", "unregister_behaviour",
    "dataset_tasks", "shard_plan", "shard_tasks", "task_for",
    "synthesize_batch", "synthesize_shard", "synthesize", "SynthesisError", "check_fits", "dataset_bytes",
    "step_bytes", "verify_shard_dir", "shard_name",
    "write_json_atomic", "DatasetError", "load_manifest", "load_shard", "SequenceDataset",
    "load_dataset_arrays", "reward_curves", "tag_statistics",
]
