"""Layout planning shared by the backends: a tensor and its mask as merged strided dims."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor

__all__ = ["mask_strides", "merged_dims"]


def mask_strides(mask_shape: Sequence[int]) -> list[int]:
    """Row-major strides of the mask, 0 on its broadcast (size-1) dimensions."""
    strides = [0] * len(mask_shape)
    running = 1
    for dim in reversed(range(len(mask_shape))):
        strides[dim] = running if mask_shape[dim] != 1 else 0
        running *= mask_shape[dim]
    return strides


def merged_dims(x: Tensor, out: Tensor, mask_shape: Sequence[int]) -> list[tuple[int, ...]]:
    """``(size, x_stride, out_stride, mask_stride)`` per dimension, outermost first in the
    output's memory order, size-1 dimensions dropped and neighbours that stay linear in all three
    index spaces merged. A contiguous input with a full mask gives ``[(n, 1, 1, 1)]``."""
    dims = [
        (size, x_stride, out_stride, mask_stride)
        for size, x_stride, out_stride, mask_stride in zip(
            x.shape, x.stride(), out.stride(), mask_strides(mask_shape), strict=True
        )
        if size != 1
    ]
    dims.sort(key=lambda dim: dim[2], reverse=True)
    merged: list[tuple[int, ...]] = []
    for size, x_stride, out_stride, mask_stride in dims:
        if merged:
            outer_size, outer_x, outer_out, outer_mask = merged[-1]
            if (outer_x, outer_out, outer_mask) == (
                x_stride * size,
                out_stride * size,
                mask_stride * size,
            ):
                merged[-1] = (outer_size * size, x_stride, out_stride, mask_stride)
                continue
        merged.append((size, x_stride, out_stride, mask_stride))
    return merged
