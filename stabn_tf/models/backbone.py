"""SlowOnly-style 3D ResNet: no temporal downsampling, temporal kernels only in res4/res5.

Built from Keras functional layers on `[B, T, H, W, C]`. Layer names follow
`res{stage}_block{i}_{conv|bn}_{a|b|c|shortcut}` so checkpoints, inflation and the
attention branch's copy of res5 (`att_res5_...`) are addressed by name.
"""

from __future__ import annotations

from dataclasses import dataclass

import keras

from stabn_tf.layers.conv import Conv3DAs2D, FrameMaxPool2D
from stabn_tf.layers.norm import batch_norm


@dataclass(frozen=True)
class ResNetSpec:
    """Blocks per stage (res2..res5) and whether the blocks are bottlenecks."""

    blocks: tuple[int, int, int, int]
    bottleneck: bool

    @property
    def expansion(self) -> int:
        return 4 if self.bottleneck else 1


RESNET_SPECS = {
    18: ResNetSpec((2, 2, 2, 2), bottleneck=False),
    34: ResNetSpec((3, 4, 6, 3), bottleneck=False),
    50: ResNetSpec((3, 4, 6, 3), bottleneck=True),
    101: ResNetSpec((3, 4, 23, 3), bottleneck=True),
}
STAGE_WIDTHS = (64, 128, 256, 512)
STAGE_STRIDES = (1, 2, 2, 2)
STAGE_TEMPORAL_KERNELS = (1, 1, 3, 3)
STEM_WIDTH = 64
# The network downsamples space by 32 (stem 4, res3..res5 8).
SPATIAL_REDUCTION = 32


def resnet_spec(depth: int) -> ResNetSpec:
    if depth not in RESNET_SPECS:
        raise ValueError(f"`depth` must be one of {sorted(RESNET_SPECS)}, got {depth!r}.")
    return RESNET_SPECS[depth]


def scaled_width(width: int, width_multiplier: float) -> int:
    """Channel count after the width multiplier (at least 4)."""
    return max(4, int(round(width * width_multiplier)))


@dataclass(frozen=True)
class BackboneConfig:
    """Everything that shapes the backbone; shared by ST-ABN, the baseline and inflation."""

    depth: int = 50
    width_multiplier: float = 1.0
    stride_in_1x1: bool = False
    synchronized_bn: bool = False

    @property
    def spec(self) -> ResNetSpec:
        return resnet_spec(self.depth)

    def width(self, stage_index: int) -> int:
        return scaled_width(STAGE_WIDTHS[stage_index], self.width_multiplier)

    def out_channels(self, stage_index: int) -> int:
        return self.width(stage_index) * self.spec.expansion


def _conv_bn(x, filters, kernel, strides, name, branch, cfg, relu):
    x = Conv3DAs2D(filters, kernel, strides=strides, name=f"{name}_conv_{branch}")(x)
    x = batch_norm(f"{name}_bn_{branch}", synchronized=cfg.synchronized_bn)(x)
    return keras.layers.ReLU(name=f"{name}_relu_{branch}")(x) if relu else x


def residual_block(x, width: int, stride: int, kt: int, name: str, cfg: BackboneConfig):
    """One bottleneck (kt×1×1 → 1×3×3 → 1×1×1) or basic (kt×3×3 → 1×3×3) block.

    `cfg.stride_in_1x1` moves a bottleneck's spatial stride into its first conv, the
    layout of `keras.applications.ResNet50`; the default keeps it in the 1×3×3 conv
    as the reference (SlowOnly / ResNet v1.5) does.
    """
    out_channels = width * cfg.spec.expansion
    if cfg.spec.bottleneck:
        s_a, s_b = (stride, 1) if cfg.stride_in_1x1 else (1, stride)
        y = _conv_bn(x, width, (kt, 1, 1), s_a, name, "a", cfg, relu=True)
        y = _conv_bn(y, width, (1, 3, 3), s_b, name, "b", cfg, relu=True)
        y = _conv_bn(y, out_channels, 1, 1, name, "c", cfg, relu=False)
    else:
        y = _conv_bn(x, width, (kt, 3, 3), stride, name, "a", cfg, relu=True)
        y = _conv_bn(y, out_channels, (1, 3, 3), 1, name, "b", cfg, relu=False)
    shortcut = x
    if stride != 1 or x.shape[-1] != out_channels:
        shortcut = _conv_bn(x, out_channels, 1, stride, name, "shortcut", cfg, relu=False)
    y = keras.layers.Add(name=f"{name}_add")([y, shortcut])
    return keras.layers.ReLU(name=f"{name}_out")(y)


def block_name(stage_index: int, block: int, prefix: str = "") -> str:
    """`res3_block2`: how block `block` (from 1) of stage res{stage_index + 2} is named."""
    return f"{prefix}res{stage_index + 2}_block{block}"


def stage_output_name(stage_index: int, depth: int, prefix: str = "") -> str:
    """The layer whose output is stage res{stage_index + 2}'s output (its last block's)."""
    return f"{block_name(stage_index, resnet_spec(depth).blocks[stage_index], prefix)}_out"


def stage(x, stage_index: int, cfg: BackboneConfig, *, stride: int | None = None,
          prefix: str = ""):
    """res{2..5}: the stage's blocks, the first one strided. `prefix` names a copy."""
    stride = STAGE_STRIDES[stage_index] if stride is None else stride
    for i in range(cfg.spec.blocks[stage_index]):
        x = residual_block(x, cfg.width(stage_index), stride if i == 0 else 1,
                           STAGE_TEMPORAL_KERNELS[stage_index],
                           block_name(stage_index, i + 1, prefix), cfg)
    return x


def stem(x, cfg: BackboneConfig):
    """1×7×7 conv stride (1,2,2) → BN → ReLU → 1×3×3 max-pool stride (1,2,2)."""
    x = _conv_bn(x, scaled_width(STEM_WIDTH, cfg.width_multiplier), (1, 7, 7), 2, "stem",
                 "a", cfg, relu=True)
    return FrameMaxPool2D(3, 2, padding=1, name="stem_pool")(x)


def feature_extractor(clips, cfg: BackboneConfig):
    """stem + res2..res4: `[B, T, H, W, 3] -> [B, T, H/16, W/16, C4]` (C4 = 1024 for R50)."""
    x = stem(clips, cfg)
    for stage_index in range(3):
        x = stage(x, stage_index, cfg)
    return x
