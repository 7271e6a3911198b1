"""The OmniRL model: sizes, token layout and causality, state carry, recurrent steps, loss."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from omnirl_core.model import (
    BACKBONES,
    PAPER_PARAM_COUNTS,
    ModelConfig,
    OmniRL,
    check_block_contract,
    count_parameters,
    detach_state,
    policy_loss,
    ramp_weights,
)
from omnirl_core.workbook import ConfigError, validate_config

torch.set_num_threads(1)

IMPLEMENTED = tuple(BACKBONES)  # every registered backbone, plug-ins of OMNIRL_PLUGINS included
VARIANTS = [(b, lay) for b in IMPLEMENTED for lay in ("paper", "compact", "compact_pair")]


def tiny(backbone: str, layout: str = "paper", **kw) -> ModelConfig:
    """A small config; layout 'compact_pair' = compact with the (state, action) pair embedding."""
    head = {"mamba2": 16}.get(backbone, 8)
    if layout == "compact_pair":
        layout, kw = "compact", {**kw, "pair_embedding": True}
    return ModelConfig(
        backbone=backbone,
        layout=layout,
        ns_max=10,
        na=5,
        hidden_size=32,
        num_layers=2,
        intermediate_size=48,
        head_dim=head,
        gdn_num_heads=2,
        chunk_size=8,
        backend="torch",
        **kw,
    )


def make_model(cfg: ModelConfig, seed: int = 0) -> OmniRL:
    torch.manual_seed(seed)
    model = OmniRL(cfg)
    with torch.no_grad():  # RWKV-7 initialises some output matrices to zero: perturb so every path matters
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return model.eval()


def make_batch(cfg: ModelConfig, B: int = 2, T: int = 13, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    obs = torch.randint(0, cfg.ns_max + 1, (B, T), generator=g)
    tag = torch.randint(0, 8, (B, T), generator=g)
    action = torch.randint(0, cfg.na + 1, (B, T), generator=g)
    reward = torch.randn(B, T, generator=g)
    return obs, tag, action, reward


def close(a, b, tol=1e-4):
    torch.testing.assert_close(a, b, rtol=tol, atol=tol)


# ---------------------------------------------------------------------------------------------------
# Sizes
# ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("backbone", sorted(PAPER_PARAM_COUNTS))
def test_paper_config_parameter_count_within_2_percent(backbone):
    n = count_parameters(ModelConfig.paper(backbone))  # built on the meta device: no memory
    assert abs(n / PAPER_PARAM_COUNTS[backbone] - 1) < 0.02, (backbone, n)


def test_paper_rwkv7_allocated_once_matches_meta_count():
    cfg = ModelConfig.paper("rwkv7", num_layers=2)
    assert count_parameters(OmniRL(cfg)) == count_parameters(cfg)


def test_config_validation():
    validate_config(ModelConfig())
    with pytest.raises(ConfigError):
        validate_config(ModelConfig(backbone="lstm"))
    with pytest.raises(ConfigError):
        validate_config(ModelConfig(layout="compact", world_model=True))
    with pytest.raises(ConfigError, match="pair_embedding"):
        validate_config(ModelConfig(layout="paper", pair_embedding=True))


def test_pair_embedding_rows_are_the_previous_state_action_pairs():
    cfg = tiny("rwkv7", "compact_pair")
    m = make_model(cfg).train()
    assert m.pair_emb.num_embeddings == (cfg.ns_max + 1) * (cfg.na + 2)
    obs = torch.tensor([[3, 7, 3, 1]])
    action = torch.tensor([[2, 0, 4, 1]])
    logits, _, st = m(obs, torch.full_like(obs, 7), action, torch.randn(1, 4))
    logits.sum().backward()
    used = m.pair_emb.weight.grad.abs().sum(-1).nonzero().flatten().tolist()
    empty = cfg.ns_max * (cfg.na + 2) + cfg.na + 1  # no previous step: masked state, placeholder action
    assert sorted(used) == sorted([empty, 3 * (cfg.na + 2) + 2, 7 * (cfg.na + 2) + 0, 3 * (cfg.na + 2) + 4])
    assert st["prev"]["obs"].tolist() == [1]


def test_embedding_sizes_and_reserved_ids():
    cfg = tiny("rwkv7", world_model=True)
    m = OmniRL(cfg)
    assert m.state_emb.num_embeddings == cfg.ns_max + 1  # + masked state
    assert m.action_emb.num_embeddings == cfg.na + 2  # + episode end, + decision placeholder
    assert m.tag_emb.num_embeddings == 8
    assert m.type_emb.num_embeddings == 4
    obs, tag, action, reward = make_batch(cfg)
    obs[:, 0], action[:, 1], tag[:, 2] = cfg.ns_max, cfg.na + 1, 7
    logits, aux, _ = m(obs, tag, action, reward)
    assert logits.shape == (2, 13, cfg.na)
    assert aux["state_logits"].shape == (2, 13, cfg.ns_max) and aux["reward_pred"].shape == (2, 13)


# ---------------------------------------------------------------------------------------------------
# Causality, state carry, recurrent steps
# ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("backbone,layout", VARIANTS)
def test_logits_at_step_t_ignore_tag_action_reward_of_t(backbone, layout):
    cfg = tiny(backbone, layout)
    m = make_model(cfg)
    obs, tag, action, reward = make_batch(cfg, T=12)
    base, _, _ = m(obs, tag, action, reward)
    t = 6
    for which in range(4):
        x = [obs.clone(), tag.clone(), action.clone(), reward.clone()]
        if which == 3:
            x[3][:, t:] += 5.0
        else:
            x[which][:, t:] = (x[which][:, t:] + 1) % (3 if which else cfg.ns_max)
        out, _, _ = m(*x)
        last_same = t - 1 if which == 0 else t  # a new s_t changes logits from t on; g/a/r of t only after t
        close(out[:, : last_same + 1], base[:, : last_same + 1], tol=1e-5)
        assert (out[:, last_same + 1 :] - base[:, last_same + 1 :]).abs().max() > 1e-4


@pytest.mark.parametrize("backbone,layout", VARIANTS)
def test_split_with_carried_detached_state_equals_one_pass(backbone, layout):
    cfg = tiny(backbone, layout, world_model=(layout == "paper"))
    m = make_model(cfg)
    obs, tag, action, reward = make_batch(cfg, T=21)
    full, aux_full, st_full = m(obs, tag, action, reward)
    cut = 9
    a, aux_a, st = m(obs[:, :cut], tag[:, :cut], action[:, :cut], reward[:, :cut])
    b, aux_b, st_b = m(obs[:, cut:], tag[:, cut:], action[:, cut:], reward[:, cut:], detach_state(st))
    close(torch.cat([a, b], dim=1), full)
    for key in aux_full:
        close(torch.cat([aux_a[key], aux_b[key]], dim=1), aux_full[key])
    for sa, sb in zip(st_b["blocks"], st_full["blocks"]):
        for key in sa:
            close(sa[key], sb[key])


def test_split_training_gradients_flow_and_stop_at_the_memory():
    cfg = tiny("rwkv7")
    m = make_model(cfg).train()
    obs, tag, action, reward = make_batch(cfg, T=10)
    _, _, st = m(obs[:, :5], tag[:, :5], action[:, :5], reward[:, :5])
    st = detach_state(st)
    assert all(not v.requires_grad for blk in st["blocks"] for v in blk.values())
    logits, _, _ = m(obs[:, 5:], tag[:, 5:], action[:, 5:], reward[:, 5:], st)
    policy_loss(logits, action[:, 5:], start=5).backward()
    assert all(p.grad is not None for n, p in m.named_parameters() if not n.startswith(("state_head", "reward_head")))


@pytest.mark.parametrize("backbone,layout", VARIANTS)
def test_recurrent_steps_equal_full_forward(backbone, layout):
    cfg = tiny(backbone, layout, world_model=(layout == "paper"))
    m = make_model(cfg)
    obs, tag, action, reward = make_batch(cfg, T=11)
    full, aux_full, _ = m(obs, tag, action, reward)
    state, outs, wm = None, [], []
    for t in range(obs.shape[1]):
        logits, state = m.act(obs[:, t], state)  # decide from s_t only
        aux, state = m.observe(tag[:, t], action[:, t], reward[:, t], state)
        outs.append(logits)
        wm.append(aux.get("state_logits"))
    close(torch.stack(outs, dim=1), full)
    if cfg.world_model:
        close(torch.stack(wm, dim=1), aux_full["state_logits"])
    # step() = act + observe, continuing from a prefix processed in one call
    _, _, st = m(obs[:, :4], tag[:, :4], action[:, :4], reward[:, :4])
    logits, _, _ = m.step(obs[:, 4], tag[:, 4], action[:, 4], reward[:, 4], st)
    close(logits, full[:, 4])


@pytest.mark.parametrize("backbone,layout", VARIANTS)
def test_end_token_and_next_act_in_one_pass_equal_two_calls(backbone, layout):
    """act_after_end(final_obs, obs) = step(final_obs, tag 7, action na, reward 0) then act(obs): same logits, and
    the memories it leaves give the same logits afterwards."""
    cfg = tiny(backbone, layout)
    m = make_model(cfg)
    obs, tag, action, reward = make_batch(cfg, T=8)
    _, _, st = m(obs[:, :4], tag[:, :4], action[:, :4], reward[:, :4])
    B = obs.shape[0]
    _, _, ended = m.step(obs[:, 4], torch.full((B,), 7), torch.full((B,), cfg.na), torch.zeros(B), st)
    want, two_calls = m.act(obs[:, 5], ended)
    got, one_pass = m.act_after_end(obs[:, 4], obs[:, 5], st)
    close(got, want, tol=1e-5)
    later = []
    for state in (two_calls, one_pass):
        _, state = m.observe(tag[:, 5], action[:, 5], reward[:, 5], state)
        later.append(m.step(obs[:, 6], tag[:, 6], action[:, 6], reward[:, 6], state)[0])
    close(later[1], later[0], tol=1e-5)
    wrong, _ = m.act_after_end(obs[:, 4], obs[:, 5], ended)  # the end token fed twice reads differently
    assert not torch.allclose(wrong, want, atol=1e-4)


def test_rwkv7_head_norm_is_its_group_norm():
    """The RWKV-7 layer normalises each head's output as its ``g_norm`` GroupNorm (fla's module) would."""
    from omnirl_core.model.layers.rwkv7 import RWKV7Attention

    attn = RWKV7Attention(48, head_dim=16)
    g = torch.Generator().manual_seed(4)
    with torch.no_grad():
        attn.g_norm.weight.copy_(torch.randn(48, generator=g))
        attn.g_norm.bias.copy_(torch.randn(48, generator=g))
    o = torch.randn(2, 7, 3, 16, generator=g) * 3 + 1
    close(attn.head_norm(o), attn.g_norm(o.reshape(14, 48)).view(2, 7, 48), tol=1e-5)
    one_group = torch.nn.functional.group_norm(o.reshape(14, 48), 1, attn.g_norm.weight, attn.g_norm.bias,
                                               attn.g_norm.eps)  # the whole vector as one group: not the same
    assert not torch.allclose(attn.head_norm(o), one_group.view(2, 7, 48), atol=1e-3)


@pytest.mark.parametrize("backbone", IMPLEMENTED)
def test_block_keeps_the_backbone_contract(backbone):
    check_block_contract(backbone)


class _BrokenBlock(torch.nn.Module):
    """A running sum over time carried in memory, broken in one of three ways."""

    def __init__(self, how: str):
        super().__init__()
        self.how = how
        self.scale = torch.nn.Parameter(torch.ones(()))

    def forward(self, x, state=None, v_first=None):
        carry = torch.zeros_like(x[:, 0]) if state is None or self.how == "forgets" else state["sum"]
        total = carry.unsqueeze(1) + x.cumsum(1)  # [B, T, D]
        y = x + self.scale * total
        if self.how == "mixes_rows":  # row b's output reads the other rows' memory
            y = y + total.mean(0, keepdim=True)
        new = total[:, -1]
        return y, {"sum": new.T if self.how == "time_first" else new}, v_first


@pytest.mark.parametrize("how,message", [("forgets", "in chunks"), ("mixes_rows", "rows 1.."),
                                         ("time_first", "batch-first")])
def test_block_contract_check_finds_a_broken_block(how, message):
    from omnirl_core.model import register_backbone, unregister_backbone

    register_backbone("broken", lambda cfg, i: _BrokenBlock(how), default_head_dim=8)
    try:
        with pytest.raises(AssertionError, match=message):
            check_block_contract("broken")
    finally:
        unregister_backbone("broken")


def test_backbone_registry_refuses_a_second_registration_unless_replacing():
    from omnirl_core.model import backbone_spec, register_backbone

    spec = backbone_spec("gsa")
    with pytest.raises(ValueError, match="'gsa' is registered already; pass replace=True"):
        register_backbone("gsa", spec.block_factory, default_head_dim=32)
    register_backbone("gsa", spec.block_factory, default_head_dim=32, replace=True)
    try:
        assert ModelConfig(backbone="gsa").resolved_head_dim == 32
    finally:
        register_backbone("gsa", spec.block_factory, default_head_dim=spec.default_head_dim,
                          description=spec.description, replace=True)
    assert list(BACKBONES)[:4] == ["rwkv7", "gated_deltanet", "gsa", "mamba2"]


@pytest.mark.parametrize("backbone", IMPLEMENTED)
def test_state_dict_keys_do_not_depend_on_the_kernel_backend(backbone):
    keys = {be: list(OmniRL(replace(tiny(backbone), backend=be)).state_dict()) for be in ("torch", "auto", "fla")}
    assert keys["torch"] == keys["auto"] == keys["fla"]


def test_rwkv7_block_keys_follow_fla_names():
    m = OmniRL(tiny("rwkv7"))
    keys = set(m.state_dict())
    expected_layer1 = {
        "attn_norm.weight",
        "attn_norm.bias",
        "ffn_norm.weight",
        "ffn_norm.bias",
        "attn.x_r",
        "attn.x_w",
        "attn.x_k",
        "attn.x_v",
        "attn.x_a",
        "attn.x_g",
        "attn.k_k",
        "attn.k_a",
        "attn.r_k",
        "attn.r_proj.weight",
        "attn.k_proj.weight",
        "attn.v_proj.weight",
        "attn.o_proj.weight",
        "attn.w_lora.lora.0.weight",
        "attn.w_lora.lora.2.weight",
        "attn.w_lora.lora.2.bias",
        "attn.v_lora.lora.0.weight",
        "attn.v_lora.lora.2.weight",
        "attn.v_lora.lora.2.bias",
        "attn.a_lora.lora.0.weight",
        "attn.a_lora.lora.2.weight",
        "attn.a_lora.lora.2.bias",
        "attn.g_lora.lora.0.weight",
        "attn.g_lora.lora.2.weight",
        "attn.g_norm.weight",
        "attn.g_norm.bias",
        "ffn.x_k",
        "ffn.key.weight",
        "ffn.value.weight",
    }
    assert {k[len("blocks.1.") :] for k in keys if k.startswith("blocks.1.")} == expected_layer1
    layer0 = {k[len("blocks.0.") :] for k in keys if k.startswith("blocks.0.")}
    assert layer0 == (expected_layer1 - {k for k in expected_layer1 if "v_lora" in k}) | {
        "pre_norm.weight",
        "pre_norm.bias",
    }


# ---------------------------------------------------------------------------------------------------
# Loss
# ---------------------------------------------------------------------------------------------------


def test_ramp_weights():
    w = ramp_weights(1024)
    assert w[0] == pytest.approx(1e-3) and w[512] == pytest.approx(1.0) and w[-1] == pytest.approx(1.0)
    assert w[256] == pytest.approx(1e-3 + (1 - 1e-3) * 0.5)
    close(ramp_weights(10, start=500), w[500:510])


def test_policy_loss_masks_episode_end_and_weights_positions():
    logits = torch.randn(2, 6, 5, requires_grad=True)
    labels = torch.randint(0, 5, (2, 6))
    labels[0, 3] = 5  # episode-end step: label outside the action set
    w = torch.rand(6)
    loss = policy_loss(logits, labels, position_weights=w)
    ce = torch.nn.functional.cross_entropy(logits.reshape(-1, 5), labels.clamp(max=4).reshape(-1), reduction="none")
    m = (labels < 5).float().reshape(-1) * w.repeat(2)
    close(loss, (ce * m).sum() / m.sum())
    mask = torch.ones(2, 6)
    mask[1] = 0
    loss2 = policy_loss(logits, labels, mask, position_weights=w)
    close(loss2, (ce[:6] * m[:6]).sum() / m[:6].sum())
    loss.backward()
    assert logits.grad[0, 3].abs().sum() == 0


# ---------------------------------------------------------------------------------------------------
# GPU: fla's kernels against the PyTorch path (same parameters)
# ---------------------------------------------------------------------------------------------------


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("backbone", ["rwkv7", "gated_deltanet", "gsa", "mamba2"])
def test_fla_kernels_match_cpu_path(backbone):
    pytest.importorskip("fla.ops", reason="flash-linear-attention with triton not installed")
    cfg = ModelConfig(
        backbone=backbone,
        ns_max=10,
        na=5,
        hidden_size=128,
        num_layers=2,
        intermediate_size=256,
        gdn_num_heads=2,
        backend="torch",
    )
    m_cpu = make_model(cfg)
    m_gpu = OmniRL(replace(cfg, backend="fla"))
    m_gpu.load_state_dict(m_cpu.state_dict())
    m_gpu = m_gpu.cuda().eval()
    obs, tag, action, reward = make_batch(cfg, B=2, T=100)
    ref, _, st_ref = m_cpu(obs, tag, action, reward)
    out, _, st = m_gpu(obs.cuda(), tag.cuda(), action.cuda(), reward.cuda())
    close(out.cpu(), ref, tol=2e-2)
    half = 50
    _, _, st1 = m_gpu(obs[:, :half].cuda(), tag[:, :half].cuda(), action[:, :half].cuda(), reward[:, :half].cuda())
    out2, _, _ = m_gpu(
        obs[:, half:].cuda(), tag[:, half:].cuda(), action[:, half:].cuda(), reward[:, half:].cuda(), st1
    )
    close(out2.cpu(), ref[:, half:], tol=2e-2)


def test_forcing_fla_backend_without_triton_fails_clearly():
    try:
        import fla.ops  # noqa: F401

        pytest.skip("fla.ops importable here")
    except ImportError:
        pass
    m = OmniRL(replace(tiny("rwkv7"), backend="fla"))
    obs, tag, action, reward = make_batch(m.cfg)
    with pytest.raises(RuntimeError, match="flash-linear-attention"):
        m(obs, tag, action, reward)


def test_config_differences_names_fields_and_ignores_backend():
    from omnirl_core.model import config_differences
    from omnirl_core.workbook import config_to_dict

    cfg = ModelConfig(hidden_size=64, num_layers=2, intermediate_size=128)
    stored = config_to_dict(cfg)
    assert config_differences(stored, cfg) == []
    assert config_differences({**stored, "backend": "fla"}, cfg) == []  # same weights run on either path
    del stored["pair_embedding"]  # recorded before the field existed: its default applies
    assert config_differences(stored, cfg) == []
    assert config_differences(stored, ModelConfig(hidden_size=64, num_layers=3, intermediate_size=128)) == [
        "num_layers: checkpoint 2, expected 3"]
    # an invalid record is compared as written
    assert "hidden_size: checkpoint -1, expected 64" in config_differences({**stored, "hidden_size": -1}, cfg)


# ---------------------------------------------------------------------------------------------------
# Dropout
# ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("backbone", ["rwkv7", "mamba2"])
def test_dropout_is_off_at_evaluation_and_drops_blocks_updates_in_training(backbone):
    cfg = tiny(backbone, dropout=0.3)
    model, plain = make_model(cfg), OmniRL(replace(cfg, dropout=0.0))
    plain.load_state_dict(model.state_dict())
    batch = make_batch(cfg, B=4, T=32)
    with torch.no_grad():
        ev = model.eval()(*batch)[0]
        assert torch.equal(ev, model(*batch)[0])  # deterministic
        assert torch.equal(ev, plain.eval()(*batch)[0])  # bit for bit the weights without dropout
        assert torch.equal(ev, plain.train()(*batch)[0])  # dropout 0 trains as it evaluates
        torch.manual_seed(0)
        tr = model.train()(*batch)[0]
    # power: the same equality rejects training mode (dropout on): outputs move by a sizeable share
    assert (tr - ev).abs().mean() > 0.05 * ev.abs().mean()
    # the drop itself: each block's update y - x is zeroed with probability p, else scaled by 1 / (1 - p)
    seen = []
    hooks = [b.register_forward_hook(lambda m, args, out: seen.append((args[0], out[0]))) for b in model.blocks]
    with torch.no_grad():
        torch.manual_seed(1)
        model(*batch)
    for h in hooks:
        h.remove()
    (x0, y0), (x1, _) = seen
    update, kept = y0 - x0, x1 - x0
    zero = kept == 0
    n = zero.numel()
    assert abs(zero.float().mean().item() - 0.3) < 4 * (0.3 * 0.7 / n) ** 0.5, zero.float().mean()
    torch.testing.assert_close(kept[~zero], update[~zero] / 0.7, rtol=1e-5, atol=1e-6)
    model.eval()
