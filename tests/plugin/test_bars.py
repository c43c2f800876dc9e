"""Progress bars are set without a synchronous repaint (issue 24, item 8: the stall at the end of a fine-tune)."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.gui


def test_a_progress_bar_is_set_without_a_synchronous_repaint(qtbot):
    """QProgressBar.setValue repaints inside the call (28 ms at the end of a fine-tune in napari's window);
    set_bar leaves the drawing to the next ordinary paint."""
    from qtpy.QtWidgets import QProgressBar

    from napari_genselfdiff.plugin.widgets._bars import set_bar

    class Counting(QProgressBar):
        paints = 0

        def paintEvent(self, event):  # noqa: N802 - Qt's name
            Counting.paints += 1
            super().paintEvent(event)

    bar = Counting()
    bar.setRange(0, 1000)
    qtbot.addWidget(bar)
    bar.show()
    qtbot.waitExposed(bar)
    qtbot.wait(50)
    before = Counting.paints
    bar.setValue(500)
    assert Counting.paints > before  # Qt's own call paints at once (what set_bar avoids)
    before = Counting.paints
    set_bar(bar, 900)
    assert bar.value() == 900 and Counting.paints == before
    qtbot.waitUntil(lambda: Counting.paints > before, timeout=2000)  # drawn in the event loop's time
