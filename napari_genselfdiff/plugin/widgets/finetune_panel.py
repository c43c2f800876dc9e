"""Fine-tune panel (provisional until core.training.finetune lands)."""

from __future__ import annotations

from qtpy.QtWidgets import QGroupBox


class FinetunePanel(QGroupBox):
    def __init__(self, state, pretrain_panel=None, segment_panel=None, parent=None) -> None:
        super().__init__("Fine-tune", parent)
        self.state = state

    def stop(self) -> None:
        pass
