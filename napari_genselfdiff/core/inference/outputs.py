"""What a class-head network outputs besides class scores: the model's *output kind*.

A segmentation model always gives class logits (``len(classes)`` maps, background first). An
instance-aware model gives, on the same U-Net head, a cue from which touching nuclei are split:

================  ==================================  ==========================================
output kind       network channels                    cue (after :func:`split_output`)
================  ==================================  ==========================================
``classes``       K class logits                      none: nuclei are split by a watershed on the
                                                      distance transform of the foreground (the
                                                      models before instance-aware outputs)
``contour``       background, interior, contour       p(interior): markers are its connected
                  (K = 2 only)                        cores, flooded over the foreground
``distance``      K class logits + 1                  each pixel's distance to its nucleus's
                                                      border, scaled to [0, 1] per nucleus (sigmoid)
``hover``         K class logits + 2                  horizontal and vertical distance to the
                                                      nucleus's centre, in [-1, 1] (tanh; HoVer-Net)
================  ==================================  ==========================================

The contour kind's three channels become the two class logits of every other model
(``[l_background, logsumexp(l_interior, l_contour)]``: the same softmax probability of "nucleus"),
so labels, uncertainty and validation read every kind alike. The kind is stored in the model file
(``output``; absent means ``classes``, so older files keep working) beside how to split
(``postprocess["instances"]``).
"""

from __future__ import annotations

import torch

from ..model_files.outputs import CUE_CHANNELS, OUTPUT_KINDS, check_output, network_channels

__all__ = ["CUE_CHANNELS", "OUTPUT_KINDS", "check_output", "network_channels", "split_output"]


def split_output(raw: torch.Tensor, kind: str, n_classes: int) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Network output (B, C, h, w) -> class logits (B, K, h, w) and the cue (B, E, h, w) or None."""
    if kind == "classes":
        return raw, None
    if kind == "contour":
        background, interior, contour = raw[:, 0:1], raw[:, 1:2], raw[:, 2:3]
        nucleus = torch.logaddexp(interior, contour)
        cue = torch.softmax(raw.float(), dim=1)[:, 1:2]
        return torch.cat([background, nucleus], dim=1), cue
    logits, extra = raw[:, :n_classes], raw[:, n_classes:]
    cue = torch.sigmoid(extra.float()) if kind == "distance" else torch.tanh(extra.float())
    return logits, cue
