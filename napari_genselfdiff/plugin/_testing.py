"""Helpers for the plugin's GUI tests and the screenshot script (imported only by them).

- :func:`isolate`: point the settings and data folders at a temporary folder.
- :class:`NotificationLog`: record napari notifications (severity, message).
- :class:`StallMeter`: a 10 ms QTimer on the main thread that records the largest gap between ticks,
  i.e. how long the GUI thread was kept from running its event loop; :func:`meter_until` starts one
  that stops when a panel's result handler is called.
- :func:`wait_for`: process Qt events until a condition holds (or fail after a timeout).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

PLUGIN = "napari-genselfdiff"
WIDGET = "GenSelfDiff annotation assist"


def isolate(monkeypatch, folder: Path) -> None:
    """Settings and default data under ``folder``; workers threaded (unless a test switches)."""
    monkeypatch.setenv("GENSELFDIFF_CONFIG_DIR", str(folder / "config"))
    monkeypatch.setenv("GENSELFDIFF_DATA_DIR", str(folder / "data"))
    monkeypatch.delenv("GENSELFDIFF_NOTHREADS", raising=False)


def open_widget(viewer):
    """Dock the widget through the manifest, as the Plugins menu does; returns it."""
    _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, WIDGET)
    return widget


def docked_with_model(viewer, model_path, monkeypatch, folder: Path):
    """The widget docked in ``viewer`` with settings isolated in ``folder``, fp32 (the behaviour under
    test, not the precision: exact and fast on every kind of CPU), jobs stopped on close, and the model
    file chosen; returns ``(widget, NotificationLog)``."""
    isolate(monkeypatch, folder)
    widget = open_widget(viewer)
    widget.model_panel.set_precision("fp32")
    widget.close_policy = "stop"
    assert widget.model_panel.load(model_path)
    return widget, NotificationLog()


class NotificationLog:
    """Collects ``(severity, message)`` of every napari notification while it is connected."""

    def __init__(self) -> None:
        from napari.utils.notifications import notification_manager

        self.items: list[tuple[str, str]] = []
        self._manager = notification_manager
        notification_manager.notification_ready.connect(self._on)

    def _on(self, event) -> None:
        notification = getattr(event, "value", event)
        self.items.append((str(notification.severity), str(notification.message)))

    def messages(self, severity: str | None = None) -> list[str]:
        return [m for s, m in self.items if severity is None or s == severity]

    def find(self, text: str, severity: str | None = None) -> str:
        """The first message containing ``text`` (case-insensitive); AssertionError if none."""
        for message in self.messages(severity):
            if text.lower() in message.lower():
                return message
        raise AssertionError(f"no {severity or ''} notification containing {text!r}; got {self.items}")

    def clear(self) -> None:
        self.items.clear()

    def close(self) -> None:
        try:
            self._manager.notification_ready.disconnect(self._on)
        except (TypeError, ValueError, RuntimeError):
            pass


class StallMeter:
    """Largest gap between ticks of a 10 ms timer on the main thread, while :meth:`start`-ed."""

    def __init__(self, interval_ms: int = 10) -> None:
        from qtpy.QtCore import QTimer

        self.interval_ms = interval_ms
        self.max_gap_ms = 0.0
        self.ticks = 0
        self._last: float | None = None
        self._timer = QTimer()
        self._timer.setInterval(interval_ms)
        self._timer.timeout.connect(self._tick)

    def _tick(self) -> None:
        now = time.perf_counter()
        if self._last is not None:
            self.max_gap_ms = max(self.max_gap_ms, (now - self._last) * 1000.0)
        self._last = now
        self.ticks += 1

    def start(self) -> None:
        self.max_gap_ms, self.ticks, self._last = 0.0, 0, None
        self._timer.start()

    def stop(self) -> float:
        self._timer.stop()
        return self.max_gap_ms


def meter_until(obj, handler: str, monkeypatch) -> tuple[StallMeter, list[float]]:
    """A started :class:`StallMeter` that stops when ``obj.<handler>`` is called (a run's result
    reaching the main thread); the seconds each call of the handler then takes on the main thread
    are recorded in the returned list."""
    meter = StallMeter()
    seconds: list[float] = []
    original = getattr(obj, handler)

    def timed(*args):
        meter.stop()
        start = time.perf_counter()
        original(*args)
        seconds.append(time.perf_counter() - start)

    monkeypatch.setattr(obj, handler, timed)
    meter.start()
    return meter, seconds


def wait_for(condition: Callable[[], bool], timeout_s: float = 60.0, what: str = "condition") -> None:
    """Process Qt events until ``condition()`` is true; AssertionError after ``timeout_s``."""
    from qtpy.QtTest import QTest

    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")
        QTest.qWait(5)  # runs the event loop (timers fire on time), unlike sleep + processEvents
