"""Fine-tuning losses of the paper (sec. III-C): structural similarity (eq. 9-10), focal (eq. 11)
and their combination L_SSFL = L_SS + lambda * L_FL. All take logits, never probabilities."""

from .combined import SSFocalLoss
from .dice_ce import DiceCELoss
from .focal import focal_loss
from .structural_similarity import EMAX_SCOPES, prepare_segmentation_inputs, structural_similarity_loss

#: Fine-tuning objectives by name (FinetuneConfig.loss).
LOSSES = {"ss_focal": SSFocalLoss, "dice_ce": DiceCELoss}

__all__ = [
    "EMAX_SCOPES",
    "LOSSES",
    "DiceCELoss",
    "SSFocalLoss",
    "focal_loss",
    "prepare_segmentation_inputs",
    "structural_similarity_loss",
]
