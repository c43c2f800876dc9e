"""Progress bars that do not stall the GUI: ``QProgressBar.setValue`` repaints the bar at once
(synchronously, inside the call) whenever the change is visible, and in a dock of napari's window that
repaint cost 28 ms at the end of a fine-tune (``benchmarks/ui_layers.py --cases finetune --profile``)
and runs on every progress event. :func:`set_bar` sets the value with the bar's updates paused, so the
bar is drawn with the next ordinary paint instead, in the event loop's own time.
"""

from __future__ import annotations


def set_bar(bar, value: int) -> None:
    """``bar.setValue(value)`` without the synchronous repaint (the bar repaints in the next paint)."""
    if bar.value() == value:
        return
    bar.setUpdatesEnabled(False)
    try:
        bar.setValue(value)
    finally:
        bar.setUpdatesEnabled(True)  # schedules an ordinary (asynchronous) update
