"""The fine-tuning objective L_SSFL = L_SS + lambda * L_FL (sec. III-C, after eq. 11)."""

from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import nn

from .focal import focal_loss
from .structural_similarity import EMAX_SCOPES, structural_similarity_loss


class SSFocalLoss(nn.Module):
    """Structural-similarity plus focal loss on segmentation logits.

    Args:
        lam: Weight lambda of the focal term. By default, 1.0 (reference code).
        beta: SS hard-pixel threshold factor. By default, 0.1 (paper).
        c1: SS stability constant. By default, 0.01 (paper).
        gamma: Focal exponent. By default, 2.0 (paper).
        alpha: Optional per-class focal weights, length C. By default, none.
        emax: SS ``e_max`` scope, ``"global"`` (default) or ``"per_map"``; see
            :func:`~.structural_similarity.structural_similarity_loss`.
        detach_error: Treat the SS error ``e`` as a constant weight. By default, False.

    Call ``loss_fn(logits, target, ignore_mask=None)`` with logits (B, C, H, W), integer
    targets (B, H, W) and an optional bool mask (B, H, W) of pixels to skip. It returns
    ``(total, parts)``: the differentiable scalar float32 total, and ``{"ss", "focal"}`` as
    detached scalars for logging.
    """

    def __init__(
        self,
        lam: float = 1.0,
        beta: float = 0.1,
        c1: float = 0.01,
        gamma: float = 2.0,
        alpha: Sequence[float] | None = None,
        emax: str = "global",
        detach_error: bool = False,
    ) -> None:
        super().__init__()
        if not lam >= 0:
            raise ValueError(f"lam must be >= 0, got {lam!r}")
        if not 0.0 <= beta <= 1.0:
            raise ValueError(f"beta must lie in [0, 1], got {beta!r}")
        if not c1 > 0:
            raise ValueError(f"c1 must be > 0, got {c1!r}")
        if not gamma >= 0:
            raise ValueError(f"gamma must be >= 0, got {gamma!r}")
        if emax not in EMAX_SCOPES:
            raise ValueError(f"emax must be one of {', '.join(EMAX_SCOPES)}, got {emax!r}")
        self.lam = float(lam)
        self.beta = float(beta)
        self.c1 = float(c1)
        self.gamma = float(gamma)
        self.alpha = None if alpha is None else [float(a) for a in alpha]
        self.emax = emax
        self.detach_error = bool(detach_error)

    def forward(
        self,
        logits: torch.Tensor,
        target: torch.Tensor,
        ignore_mask: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Compute ``L_SS + lam * L_FL``.

        Args:
            logits: Raw scores (B, C, H, W).
            target: Class indices (B, H, W).
            ignore_mask: Optional bool (B, H, W), True at pixels to skip.

        Returns:
            ``(total, {"ss": ..., "focal": ...})``.
        """
        ss = structural_similarity_loss(
            logits, target, ignore_mask, beta=self.beta, c1=self.c1, emax=self.emax,
            detach_error=self.detach_error,
        )
        fl = focal_loss(logits, target, ignore_mask, gamma=self.gamma, alpha=self.alpha)
        total = ss + self.lam * fl
        return total, {"ss": ss.detach(), "focal": fl.detach()}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> "SSFocalLoss":
        """Rebuild from :meth:`to_config` output.

        Raises:
            ValueError: If the config names another loss. TypeError: for unknown keys.
        """
        settings = dict(config)
        name = settings.pop("name", "ss_focal")
        if name != "ss_focal":
            raise ValueError(f"config describes loss {name!r}, not 'ss_focal'")
        return cls(**settings)

    def to_config(self) -> dict[str, Any]:
        """JSON-serialisable settings (stored in model-file metadata); see :meth:`from_config`."""
        return {
            "name": "ss_focal",
            "lam": self.lam,
            "beta": self.beta,
            "c1": self.c1,
            "gamma": self.gamma,
            "alpha": self.alpha,
            "emax": self.emax,
            "detach_error": self.detach_error,
        }

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v!r}" for k, v in self.to_config().items() if k != "name")
