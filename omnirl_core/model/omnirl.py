"""The OmniRL model: a causal recurrent sequence model over (state, tag, action, reward) steps.

Paper layout (default, ``layout="paper"``): every step t becomes four tokens, in this order::

    s_t  = state_emb[obs_t]    + type_emb[0]     obs in 0..ns_max-1, ns_max = masked state
    g_t  = tag_emb[tag_t]      + type_emb[1]     tag in 0..7, 7 = unknown
    a_t  = action_emb[act_t]   + type_emb[2]     act in 0..na-1, na = episode end, na+1 = placeholder
    r_t  = reward_emb(rew_t)   + type_emb[3]     Linear(1, d)

The policy logits for the label a*_t are read at the s_t token, i.e. before the model has seen g_t, a_t, r_t.
The optional world-model heads are read at the a_t token and predict s_{t+1} (over ns_max classes) and r_t.

Compact layout (``layout="compact"``, for cheap CPU runs; not the paper's): one fused token per step,
``state_emb[obs_t] + tag_emb[tag_{t-1}] + action_emb[act_{t-1}] + reward_emb(rew_{t-1}) + type_emb[0]``, the
previous step's (obs, tag, action, reward) being (ns_max, 7, na+1, 0) at the start of a memory. With
``pair_embedding`` the token also gets ``pair_emb[obs_{t-1} * (na+2) + act_{t-1}]``: an additive sum of a state
and an action embedding cannot tell "action 2 in state 5" from other combinations when it is used as a key of
the recurrent memory, while a joint embedding can, which is what an MDP's per-(state, action) statistics need.
Logits are read at that token, so causality is the same as in the paper layout. It has no world-model heads
(s_{t+1} is inside the next token), and costs a quarter of the sequence length.

Backbones: ``rwkv7``, ``gated_deltanet``, ``gsa`` and ``mamba2`` (``omnirl_core.model.layers``), registered by name in
:mod:`.backbones` (``register_backbone`` adds another; the contract a block keeps is written there): pure-PyTorch
chunked kernels on CPU, flash-linear-attention's Triton kernels on a GPU (``chunk_rwkv7``,
``chunk_gated_delta_rule``, ``chunk_gsa``, ``chunk_simple_gla``), one set of parameters; ``backend`` chooses
(``auto``: fla's on a CUDA tensor when importable), and each layer says once which path it runs and why.

Paper sizes (18 blocks x 512, ``ModelConfig.paper(backbone)``; counts with the policy head only):
rwkv7 head 64, FFN 1024: 43.8M (paper 43.6M); gated_deltanet 8 heads x 48, value expansion 1, SwiGLU 1024:
46.9M (paper 46.3M; the paper does not give the split, this one is a choice within 2%); mamba2 head 128,
state 128, expand 2, no FFN: 31.5M (paper 31.6M); gsa head 64 (8 heads, 64 slots), SwiGLU 683: 43.1M
(paper 42.9M).

Memory (``state``) is a dict: ``{"blocks": [per-block dict of tensors], "prev": {...}}`` (``prev`` only in
the compact layout). ``None`` is the empty memory. Use :func:`detach_state` between training segments.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..workbook.fields import check, param
from .backbones import BACKBONES, backbone_spec, build_block

__all__ = [
    "BACKBONES",
    "PAPER_PARAM_COUNTS",
    "Head",
    "ModelConfig",
    "OmniRL",
    "count_parameters",
    "detach_state",
    "policy_loss",
    "ramp_weights",
]

PAPER_PARAM_COUNTS = {"rwkv7": 43.6e6, "gated_deltanet": 46.3e6, "gsa": 42.9e6, "mamba2": 31.6e6}
"""Total parameter counts reported in the paper for 18 blocks x 512."""

N_TAGS = 8  # tags 0..6 plus 7 = unknown
TAG_UNKNOWN = 7


@dataclass
class ModelConfig:
    backbone: str = param("rwkv7", choices=BACKBONES)
    "Sequence backbone: a registered name (omnirl_core.model.BACKBONES; the paper's choice is rwkv7)."
    layout: str = param("paper", choices=("paper", "compact"))
    "Token layout: 'paper' = four tokens per step (s, g, a, r); 'compact' = one fused token per step."
    ns_max: int = param(128, ge=1)
    "Number of state ids; id ns_max is the masked state (state embedding has ns_max + 1 rows)."
    na: int = param(5, ge=1)
    "Number of actions; id na = episode end, na + 1 = decision placeholder (action embedding has na + 2 rows)."
    hidden_size: int = param(512, ge=8)
    "Model width d."
    num_layers: int = param(18, ge=1)
    "Number of backbone blocks."
    intermediate_size: int = param(1024, ge=1)
    "Inner width of each block's feed-forward part."
    head_dim: int | None = param(None, ge=4)
    ("Recurrent head size; None = the backbone's default (the paper's: rwkv7 64, gated_deltanet 48, gsa 64, "
     "mamba2 128).")
    gdn_num_heads: int = param(8, ge=1)
    "Gated DeltaNet: number of heads (keys: gdn_num_heads * head_dim)."
    gdn_expand_v: float = param(1.0, gt=0)
    "Gated DeltaNet: value head size / key head size."
    mamba_state_size: int = param(128, ge=1)
    "Mamba2: state size N per head (B_t, C_t width)."
    mamba_expand: int = param(2, ge=1)
    "Mamba2: inner width / hidden size (Mamba2 blocks have no separate feed-forward part)."
    chunk_size: int | None = param(None, ge=1)
    "Chunk length of the PyTorch kernels; None = 64 (rwkv7, gated_deltanet, mamba2) / 32 (gsa)."
    world_model: bool = False
    "Add world-model heads (next state, reward) read at the a_t token (paper layout only)."
    pair_embedding: bool = False
    "Compact layout: also embed the previous (state, action) pair jointly, so its reward arrives keyed by the pair."
    backend: str = param("auto", choices=("auto", "torch", "fla"))
    "Kernels: 'auto' = fla's on CUDA tensors when importable, else PyTorch; 'torch' / 'fla' force one."
    norm_eps: float = param(1e-5, gt=0)
    "Epsilon of the normalisation layers."
    dropout: float = param(0.0, ge=0, lt=1)
    "Dropout on each block's residual update while training (model.train()); off at evaluation. 0 = none."

    def validate(self) -> None:
        check(
            not (self.world_model and self.layout == "compact"),
            "world_model",
            self.world_model,
            "false with layout 'compact' (the next state is inside the next fused token)",
        )
        check(
            not (self.pair_embedding and self.layout != "compact"),
            "pair_embedding",
            self.pair_embedding,
            "false unless layout is 'compact' (the paper layout has separate s, a and r tokens)",
        )
        hd = self.resolved_head_dim
        if self.backbone == "rwkv7":
            check(self.hidden_size % hd == 0, "head_dim", hd, f"a divisor of hidden_size ({self.hidden_size})")

    @property
    def resolved_head_dim(self) -> int:
        return self.head_dim if self.head_dim is not None else backbone_spec(self.backbone).default_head_dim

    @classmethod
    def paper(cls, backbone: str = "rwkv7", **overrides) -> ModelConfig:
        """The paper's size: 18 blocks x 512, inner 1024, the backbone's head size."""
        return replace(cls(backbone=backbone, num_layers=18, hidden_size=512, intermediate_size=1024), **overrides)


def config_differences(stored: dict, expected: ModelConfig) -> list[str]:
    """One line per field where a checkpoint's recorded model configuration differs from ``expected``.

    The recorded one is completed with defaults first, so a checkpoint written before a field existed matches a
    configuration that leaves the field at its default. The kernel ``backend`` is ignored: the same weights run on
    either path. An invalid record is compared as written."""
    from ..workbook import ConfigError, config_to_dict, load_config

    try:
        have = config_to_dict(load_config(ModelConfig, stored))
    except ConfigError:
        have = dict(stored)
    want = config_to_dict(expected)
    return [f"{k}: checkpoint {have.get(k, '<absent>')!r}, expected {want.get(k, '<absent>')!r}"
            for k in sorted(set(have) | set(want)) if k != "backend" and have.get(k) != want.get(k)]


# --------------------------------------------------------------------------------------------------
# Heads
# --------------------------------------------------------------------------------------------------


class Head(nn.Module):
    """LayerNorm, residual MLP (d -> d -> d, GELU), linear output: ``out(h + fc2(gelu(fc1(h))))``, h = LN(x)."""

    def __init__(self, d: int, n_out: int, eps: float = 1e-5):
        super().__init__()
        self.norm = nn.LayerNorm(d, eps=eps)
        self.fc1 = nn.Linear(d, d)
        self.fc2 = nn.Linear(d, d)
        self.out = nn.Linear(d, n_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.norm(x)
        return self.out(h + self.fc2(F.gelu(self.fc1(h))))


# --------------------------------------------------------------------------------------------------
# Model
# --------------------------------------------------------------------------------------------------


class OmniRL(nn.Module):
    """``forward(obs, tag, action, reward, state=None) -> (logits [B, T, na], aux, new_state)``.

    Inputs, all [B, T]: ``obs`` long in 0..ns_max (ns_max = masked), ``tag`` long in 0..7, ``action`` long in
    0..na+1, ``reward`` float. ``aux`` holds ``state_logits`` [B, T, ns_max] and ``reward_pred`` [B, T] when
    the world-model heads are on. Online acting: :meth:`act` (feed s_t, get logits) then :meth:`observe`
    (feed g_t, a_t, r_t); :meth:`step` does both. Each costs O(1) given the memory.
    """

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        d = cfg.hidden_size
        self.state_emb = nn.Embedding(cfg.ns_max + 1, d)
        self.tag_emb = nn.Embedding(N_TAGS, d)
        self.action_emb = nn.Embedding(cfg.na + 2, d)
        self.reward_emb = nn.Linear(1, d)
        self.type_emb = nn.Embedding(4 if cfg.layout == "paper" else 1, d)  # per-slot type embedding
        if cfg.pair_embedding:  # rows: (previous obs 0..ns_max) x (previous action 0..na+1)
            self.pair_emb = nn.Embedding((cfg.ns_max + 1) * (cfg.na + 2), d)
        self.blocks = nn.ModuleList(build_block(cfg, i) for i in range(cfg.num_layers))
        self.norm_out = nn.LayerNorm(d, eps=cfg.norm_eps)
        self.policy_head = Head(d, cfg.na, cfg.norm_eps)
        if cfg.world_model:
            self.state_head = Head(d, cfg.ns_max, cfg.norm_eps)
            self.reward_head = Head(d, 1, cfg.norm_eps)
        if not self.state_emb.weight.is_meta:
            for emb in (self.state_emb, self.tag_emb, self.action_emb, self.type_emb):
                nn.init.normal_(emb.weight, std=0.02)
            if cfg.pair_embedding:
                nn.init.normal_(self.pair_emb.weight, std=0.02)

    # ---- embeddings ------------------------------------------------------------------------------
    def _embed_paper(self, obs, tag, action, reward) -> torch.Tensor:
        """[B, T] x 4 -> tokens [B, 4T, d] ordered s_0, g_0, a_0, r_0, s_1, ..."""
        te = self.type_emb.weight  # [4, d]
        s = self.state_emb(obs) + te[0]  # [B, T, d]
        g = self.tag_emb(tag) + te[1]
        a = self.action_emb(action) + te[2]
        r = self.reward_emb(reward.unsqueeze(-1).to(te.dtype)) + te[3]
        B, T, d = s.shape
        return torch.stack([s, g, a, r], dim=2).reshape(B, 4 * T, d)

    def _embed_compact(self, obs, tag, action, reward, prev: dict | None) -> torch.Tensor:
        """[B, T] x 4 -> fused tokens [B, T, d]: state of step t + (tag, action, reward) of step t-1."""
        B = obs.shape[0]
        if prev is None:
            prev = self._empty_prev(B, obs.device)
        p_tag = torch.cat([prev["tag"].view(B, 1), tag[:, :-1]], dim=1)  # [B, T]
        p_act = torch.cat([prev["action"].view(B, 1), action[:, :-1]], dim=1)
        p_rew = torch.cat([prev["reward"].view(B, 1).to(reward.dtype), reward[:, :-1]], dim=1)
        rew = self.reward_emb(p_rew.unsqueeze(-1).to(self.type_emb.weight.dtype))
        x = self.state_emb(obs) + self.tag_emb(p_tag) + self.action_emb(p_act) + rew + self.type_emb.weight[0]
        if self.cfg.pair_embedding:
            p_obs = torch.cat([prev["obs"].view(B, 1), obs[:, :-1]], dim=1)  # [B, T]
            x = x + self.pair_emb(p_obs * (self.cfg.na + 2) + p_act)
        return x

    def _empty_prev(self, B: int, device) -> dict:
        return {
            "obs": torch.full((B,), self.cfg.ns_max, dtype=torch.long, device=device),
            "tag": torch.full((B,), TAG_UNKNOWN, dtype=torch.long, device=device),
            "action": torch.full((B,), self.cfg.na + 1, dtype=torch.long, device=device),
            "reward": torch.zeros(B, device=device),
        }

    # ---- backbone --------------------------------------------------------------------------------
    def _backbone(self, x: torch.Tensor, state: dict | None) -> tuple[torch.Tensor, list]:
        """x [B, L, d] -> (normalised hidden [B, L, d], new per-block states)."""
        blocks_state = state["blocks"] if state is not None else [None] * len(self.blocks)
        new_states, v_first = [], None
        drop = self.training and self.cfg.dropout > 0  # else the blocks' outputs exactly, as without dropout
        for block, st in zip(self.blocks, blocks_state):
            y, st, v_first = block(x, st, v_first)
            x = x + F.dropout(y - x, self.cfg.dropout, training=True) if drop else y
            new_states.append(st)
        return self.norm_out(x), new_states

    # ---- full sequence ---------------------------------------------------------------------------
    def forward(self, obs, tag, action, reward, state: dict | None = None):
        aux: dict[str, torch.Tensor] = {}
        if self.cfg.layout == "paper":
            x = self._embed_paper(obs, tag, action, reward)  # [B, 4T, d]
            h, blocks = self._backbone(x, state)
            B, L, d = h.shape
            h = h.view(B, L // 4, 4, d)  # [B, T, slot, d]
            logits = self.policy_head(h[:, :, 0])  # read at s_t            [B, T, na]
            if self.cfg.world_model:
                aux["state_logits"] = self.state_head(h[:, :, 2])  # read at a_t  [B, T, ns_max]
                aux["reward_pred"] = self.reward_head(h[:, :, 2]).squeeze(-1)  # [B, T]
            return logits, aux, {"blocks": blocks}
        x = self._embed_compact(obs, tag, action, reward, None if state is None else state.get("prev"))
        h, blocks = self._backbone(x, state)  # [B, T, d]
        prev = {"obs": obs[:, -1], "tag": tag[:, -1], "action": action[:, -1], "reward": reward[:, -1]}
        return self.policy_head(h), aux, {"blocks": blocks, "prev": prev}

    # ---- online acting ---------------------------------------------------------------------------
    @torch.inference_mode()
    def act(self, obs: torch.Tensor, state: dict | None = None):
        """Feed s_t (obs [B]) and read the policy: -> (logits [B, na], new_state)."""
        obs = obs.view(-1, 1)
        if self.cfg.layout == "paper":
            x = self.state_emb(obs) + self.type_emb.weight[0]  # [B, 1, d]
            h, blocks = self._backbone(x, state)
            return self.policy_head(h[:, 0]), {"blocks": blocks}
        B = obs.shape[0]
        prev = state.get("prev") if state is not None else None
        prev = prev if prev is not None else self._empty_prev(B, obs.device)
        x = self._embed_compact(
            obs, prev["tag"].view(B, 1), prev["action"].view(B, 1), prev["reward"].view(B, 1).float(), prev
        )
        h, blocks = self._backbone(x, state)
        return self.policy_head(h[:, 0]), {"blocks": blocks, "prev": None, "obs": obs.view(B)}

    @torch.inference_mode()
    def observe(self, tag: torch.Tensor, action: torch.Tensor, reward: torch.Tensor, state: dict):
        """Feed g_t, a_t, r_t (each [B]) after :meth:`act`: -> (aux, new_state); aux has the world-model outputs."""
        aux: dict[str, torch.Tensor] = {}
        if self.cfg.layout == "paper":
            te = self.type_emb.weight
            x = torch.stack(
                [
                    self.tag_emb(tag) + te[1],
                    self.action_emb(action) + te[2],
                    self.reward_emb(reward.view(-1, 1).to(te.dtype)) + te[3],
                ],
                dim=1,
            )  # [B, 3, d]
            h, blocks = self._backbone(x, state)
            if self.cfg.world_model:
                aux["state_logits"] = self.state_head(h[:, 1])
                aux["reward_pred"] = self.reward_head(h[:, 1]).squeeze(-1)
            return aux, {"blocks": blocks}
        prev = {"obs": state["obs"], "tag": tag, "action": action, "reward": reward.float()}
        return aux, {"blocks": state["blocks"], "prev": prev}

    @torch.inference_mode()
    def act_after_end(self, final_obs: torch.Tensor, obs: torch.Tensor, state: dict):
        """:meth:`step` with the end-of-episode token (``final_obs``, tag unknown, action ``na``, reward 0), then
        :meth:`act` on ``obs`` (each [B]), in one pass of the backbone: -> (logits [B, na] read at ``obs``,
        new_state). Every run of the batch ended an episode; a bandit ends one every step, so its online runs
        cost one pass per step rather than two."""
        B = obs.shape[0]
        unknown = torch.full((B,), TAG_UNKNOWN, dtype=torch.long, device=obs.device)
        no_action = torch.full((B,), self.cfg.na, dtype=torch.long, device=obs.device)
        if self.cfg.layout == "paper":  # s_end, g, a, r of the end token, then s_t: 5 tokens
            end = self._embed_paper(final_obs.view(B, 1), unknown.view(B, 1), no_action.view(B, 1),
                                    torch.zeros(B, 1, device=obs.device))  # [B, 4, d]
            x = torch.cat([end, self.state_emb(obs.view(B, 1)) + self.type_emb.weight[0]], dim=1)  # [B, 5, d]
            h, blocks = self._backbone(x, state)
            return self.policy_head(h[:, -1]), {"blocks": blocks}
        prev = state.get("prev") if state is not None else None
        prev = prev if prev is not None else self._empty_prev(B, obs.device)
        two = lambda first, second: torch.stack([first.view(B), second.view(B)], dim=1)  # noqa: E731  [B, 2]
        x = self._embed_compact(two(final_obs, obs), two(unknown, unknown), two(no_action, no_action),
                                torch.zeros(B, 2, device=obs.device), prev)  # the second token's inputs: unused
        h, blocks = self._backbone(x, state)
        return self.policy_head(h[:, -1]), {"blocks": blocks, "prev": None, "obs": obs.view(B)}

    @torch.inference_mode()
    def step(self, obs, tag, action, reward, state: dict | None = None):
        """One whole step (obs, tag, action, reward each [B]) -> (logits [B, na] read at s_t, aux, new_state)."""
        logits, state = self.act(obs, state)
        aux, state = self.observe(tag, action, reward, state)
        return logits, aux, state


# --------------------------------------------------------------------------------------------------
# Loss and utilities
# --------------------------------------------------------------------------------------------------


def ramp_weights(T: int, start: int = 0, warmup: int = 512, w0: float = 1e-3, device=None) -> torch.Tensor:
    """w_t rising linearly from ``w0`` at step 0 to 1 at step ``warmup`` (then 1); steps ``start .. start+T-1``."""
    t = torch.arange(start, start + T, device=device, dtype=torch.float32)
    return w0 + (1.0 - w0) * (t / max(warmup, 1)).clamp(max=1.0)


def policy_loss(
    logits: torch.Tensor,
    labels: torch.Tensor,
    label_mask: torch.Tensor | None = None,
    position_weights: torch.Tensor | None = None,
    start: int = 0,
    warmup: int = 512,
) -> torch.Tensor:
    """Position-weighted cross entropy  sum_t w_t m_t (-log p(a*_t)) / sum_t w_t m_t.

    logits [B, T, na]; labels [B, T] (ids outside 0..na-1, e.g. the episode-end step, count as masked);
    label_mask [B, T] (1 = use); position_weights [T] or [B, T], default :func:`ramp_weights` for steps
    ``start ..`` (pass ``start`` = offset of this segment in the sequence when training chunk by chunk).
    """
    B, T, na = logits.shape
    valid = (labels >= 0) & (labels < na)
    mask = valid.float() if label_mask is None else label_mask.float() * valid
    w = ramp_weights(T, start, warmup, device=logits.device) if position_weights is None else position_weights
    ce = F.cross_entropy(logits.reshape(B * T, na).float(), labels.clamp(0, na - 1).reshape(-1), reduction="none")
    wm = w.expand(B, T) * mask
    return (ce.view(B, T) * wm).sum() / wm.sum().clamp_min(1e-8)


def detach_state(state):
    """A copy of a memory with every tensor detached (stop-gradient between training segments)."""
    if isinstance(state, torch.Tensor):
        return state.detach()
    if isinstance(state, dict):
        return {k: detach_state(v) for k, v in state.items()}
    if isinstance(state, (list, tuple)):
        return type(state)(detach_state(v) for v in state)
    return state


def count_parameters(model_or_cfg: nn.Module | ModelConfig) -> int:
    """Number of parameters of a model, or of the model a config would build (on the meta device, no memory)."""
    if isinstance(model_or_cfg, ModelConfig):
        with torch.device("meta"):
            model_or_cfg = OmniRL(model_or_cfg)
    return sum(p.numel() for p in model_or_cfg.parameters())
