"""The model (paper section 3): a causal recurrent sequence model over (state, tag, action, reward) steps.

- :mod:`.omnirl` :class:`ModelConfig`, :class:`OmniRL` and its token layouts, the policy loss
- :mod:`.layers` the backbone blocks (RWKV-7, Gated DeltaNet, GSA, Mamba2)
- :mod:`.ops` their recurrent kernels, each with a per-step ``naive`` reference
"""

from .omnirl import (
    BACKBONES,
    PAPER_PARAM_COUNTS,
    Head,
    ModelConfig,
    OmniRL,
    config_differences,
    count_parameters,
    detach_state,
    policy_loss,
    ramp_weights,
)

__all__ = [
    "BACKBONES", "PAPER_PARAM_COUNTS", "Head", "ModelConfig", "OmniRL", "config_differences",
    "count_parameters", "detach_state", "policy_loss", "ramp_weights",
]
