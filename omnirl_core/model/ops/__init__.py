"""Pure-PyTorch recurrent kernels (CPU path of the sequence backbones).

Every kernel takes tensors in the layout ``[B, T, H, D]`` (batch, time, head, channel), an optional
``initial_state`` ``[B, H, K, V]`` and returns ``(o [B, T, H, V], final_state [B, H, K, V])``. The state
orientation is "keys x values": a read-out is ``o_t = S_t^T q_t``. This is the layout and orientation of
flash-linear-attention's public ops (``chunk_rwkv7``, ``chunk_gated_delta_rule``), so states can be passed
between the two implementations unchanged.

Each rule has a per-step ``*_naive`` reference (obviously correct, slow) and a ``*_chunked`` matrix form
(a handful of batched matmuls per chunk plus one small triangular solve; only a ``[K, K] x [K, V]``
product per chunk remains sequential). For RWKV-7 on CPU at small heads the chunked form's pairwise chunk
matrices cost several times the recurrence's own arithmetic, so ``dplr_step`` adds a per-step kernel compiled
with numba (``dplr_recurrent`` / ``rwkv7_recurrent``, forward and backward written out), which the RWKV-7
layer selects by shape.

Rules: ``dplr`` (RWKV-7), ``gated_delta`` (Gated DeltaNet), ``simple_gla`` (scalar-gated linear attention, Mamba2),
``gsa`` (Gated Slot Attention; its state is a pair ``(Hk [B, H, K, M], Hv [B, H, M, V])``).

CPU speed note: backward passes through long sequences with strong decay produce subnormal floats, which
x86 CPUs process very slowly (measured up to 30x slower). Training code on CPU should call
``torch.set_flush_denormal(True)`` (values below ~1e-38 become 0; results are otherwise unchanged).
"""

from omnirl_core.model.ops.dplr import dplr_chunked, dplr_naive, rwkv7_chunked, rwkv7_naive
from omnirl_core.model.ops.dplr_step import dplr_recurrent, rwkv7_recurrent
from omnirl_core.model.ops.gated_delta import gated_delta_chunked, gated_delta_naive
from omnirl_core.model.ops.gsa import gsa_chunked, gsa_naive
from omnirl_core.model.ops.simple_gla import simple_gla_chunked, simple_gla_naive

__all__ = [
    "dplr_chunked",
    "dplr_naive",
    "dplr_recurrent",
    "gated_delta_chunked",
    "gated_delta_naive",
    "gsa_chunked",
    "gsa_naive",
    "rwkv7_chunked",
    "rwkv7_naive",
    "rwkv7_recurrent",
    "simple_gla_chunked",
    "simple_gla_naive",
]
