"""The model (paper section 3): a causal recurrent sequence model over (state, tag, action, reward) steps.

- :mod:`.omnirl` :class:`ModelConfig`, :class:`OmniRL` and its token layouts, the policy loss
- :mod:`.backbones` the backbone registry (:func:`register_backbone`) and the contract every block keeps
- :mod:`.layers` the backbone blocks (RWKV-7, Gated DeltaNet, GSA, Mamba2)
- :mod:`.ops` their recurrent kernels, each with a per-step ``naive`` reference
"""

from .backbones import BACKBONES, backbone_spec, register_backbone, unregister_backbone
from .contract import check_block_contract
from .omnirl import (
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
    "BACKBONES", "backbone_spec", "check_block_contract", "register_backbone", "unregister_backbone",
    "PAPER_PARAM_COUNTS", "Head", "ModelConfig", "OmniRL", "config_differences",
    "count_parameters", "detach_state", "policy_loss", "ramp_weights",
]
