"""The dock widget "GenSelfDiff annotation assist": the panels of the correct-and-retrain loop in tabs.

Tabs follow the loop: **Segment** (model, segment), **Correct** (mark corrected pairs, export),
**Train** (fine-tuning on the corrected pairs first, as the common action; below it, diffusion
pretraining on unlabeled images in a section the user opens). Each panel
lives in its own module under :mod:`.widgets` and shares one :class:`._state.PluginState`.

Closing napari while a job runs asks first (``close_policy`` answers without a dialog: "stop" or
"keep"); stopping cancels training runs (they save a checkpoint of their last completed step) and
quits a segmentation, then waits for the workers to end.
"""

from __future__ import annotations

import time

from qtpy.QtCore import QEvent, QObject, Qt
from qtpy.QtWidgets import QApplication, QScrollArea, QTabWidget, QVBoxLayout, QWidget

from ._state import PluginState


def _scrolling(*panels: QWidget) -> QScrollArea:
    page = QWidget()
    layout = QVBoxLayout(page)
    for panel in panels:
        layout.addWidget(panel)
    layout.addStretch(1)
    area = QScrollArea()
    area.setWidgetResizable(True)
    area.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)  # fit the dock's width
    area.setWidget(page)
    return area


def _collapsible(title: str, panel: QWidget) -> QWidget:
    """``panel`` in a section that starts folded; a click on its title opens it."""
    from ._fit import section

    return section(title, panel)


class GenSelfDiffWidget(QWidget):
    """The plugin's dock widget.

    Attributes:
        state: shared :class:`PluginState` (viewer, model, annotation set, jobs).
        model_panel, segment_panel, annotation_panel, export_panel, pretrain_panel, finetune_panel.
        pretrain_section: the folded section (a superqt ``QCollapsible``) that holds the pretrain panel.
        close_policy: what to do with running jobs when napari closes: None asks (a dialog),
            "stop" stops them, "keep" refuses to close.
        stop_timeout_s: how long closing waits for stopped jobs to end. By default 120 s.
    """

    def __init__(self, napari_viewer, parent=None) -> None:
        super().__init__(parent)
        from .widgets.annotation_panel import AnnotationPanel
        from .widgets.export_panel import ExportPanel
        from .widgets.finetune_panel import FinetunePanel
        from .widgets.model_panel import ModelPanel
        from .widgets.pretrain_panel import PretrainPanel
        from .widgets.segment_panel import SegmentPanel

        _warm_up()
        self.viewer = napari_viewer
        self.state = PluginState(napari_viewer, parent=self)
        self.close_policy: str | None = None
        self.stop_timeout_s = 120.0
        self.model_panel = ModelPanel(self.state)
        self.segment_panel = SegmentPanel(self.state)
        self.state.inference_settings = self.segment_panel.inference_settings  # the slide widget's too
        self.annotation_panel = AnnotationPanel(self.state)
        self.export_panel = ExportPanel(self.state)
        self.pretrain_panel = PretrainPanel(self.state)
        self.finetune_panel = FinetunePanel(self.state, pretrain_panel=self.pretrain_panel,
                                            segment_panel=self.segment_panel)

        self.tabs = QTabWidget()
        self.tabs.addTab(_scrolling(self.model_panel, self.segment_panel), "Segment")
        self.tabs.addTab(_scrolling(self.annotation_panel, self.export_panel), "Correct")
        self.pretrain_section = _collapsible("Pretrain on unlabeled images (optional)", self.pretrain_panel)
        self.pretrain_section.setToolTip("Diffusion pretraining on images without labels: optional, and slow on a CPU.")
        # what pretraining was measured to add, shown above the section that offers it (folded or not)
        self.tabs.addTab(_scrolling(self.finetune_panel, self.pretrain_panel.worth, self.pretrain_section), "Train")
        from .widgets.finetune_panel import START_PRETRAINED

        def open_pretraining(choice: str) -> None:  # starting from a pretrained model that is not there yet
            if choice == START_PRETRAINED and self.pretrain_panel.model_path is None:
                self.pretrain_section.expand(animate=False)

        self.finetune_panel.start_from.currentTextChanged.connect(open_pretraining)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(2, 2, 2, 2)
        layout.addWidget(self.tabs)
        self.setMinimumWidth(360)  # the narrowest the panels fit (tests/plugin/test_plugin_layout.py)
        from ._fit import fit_narrow

        fit_narrow(self)  # every tab fits the dock's width (narrower than the panels' natural widths)

        self._close_filter = _CloseFilter(self)
        self._watched = None
        self.destroyed.connect(self._close_filter.deleteLater)
        # If the dock is closed while jobs run, stop them (training saves a checkpoint); the closure
        # holds only plain Python objects, which outlive the Qt widgets.
        self.destroyed.connect(_abandon(self.state.jobs, self.pretrain_panel, self.finetune_panel))

    def showEvent(self, event) -> None:
        super().showEvent(event)
        window = self.window()
        if window is not self and window is not self._watched:
            if self._watched is not None:
                self._watched.removeEventFilter(self._close_filter)
            window.installEventFilter(self._close_filter)
            self._watched = window

    # -- closing with jobs running -----------------------------------------------------------------

    def confirm_close(self) -> bool:
        """Called when napari is closing: True lets it close (after stopping the jobs), False keeps it."""
        running = self.state.running_jobs()
        if not running:
            return True
        policy = self.close_policy
        if policy is None:
            names = ", ".join(running)
            policy = "stop" if self.state.ask(
                "GenSelfDiff job running",
                f"A {names} job is running. Stop it and close napari? Training saves a checkpoint of its last "
                "completed step, so it can be resumed.",
            ) else "keep"
        if policy == "keep":
            return False
        self.stop_jobs()
        return True

    def stop_jobs(self, timeout_s: float | None = None) -> bool:
        """Cancel every running job and wait (processing events) until they end; True if all ended."""
        for panel in (self.segment_panel, self.finetune_panel, self.pretrain_panel):
            panel.stop()
        deadline = time.monotonic() + (self.stop_timeout_s if timeout_s is None else timeout_s)
        while self.state.running_jobs() and time.monotonic() < deadline:
            QApplication.processEvents()
            time.sleep(0.01)
        return not self.state.running_jobs()


def _abandon(jobs: dict, *panels):
    def stop(*_) -> None:
        for panel in panels:
            control = getattr(panel, "control", None)
            if control is not None:
                control.cancel()
        segment = jobs.get("segment")
        if segment is not None:
            segment.quit()

    return stop


def _warm_up() -> None:
    """Import the compute modules now, while the dock opens, not in the first click's handler (about
    1 s on a small CPU; a stalled click feels broken, a dock that takes a second to open does not)."""
    import napari_genselfdiff.core.export  # noqa: F401
    import napari_genselfdiff.core.inference  # noqa: F401
    import napari_genselfdiff.core.training  # noqa: F401


class _CloseFilter(QObject):
    """Event filter on napari's main window: asks the widget before the window closes."""

    def __init__(self, widget: GenSelfDiffWidget) -> None:
        super().__init__()
        self._widget = widget

    def eventFilter(self, obj, event) -> bool:  # noqa: N802 - Qt's name
        if event.type() == QEvent.Type.Close:
            try:
                allowed = self._widget.confirm_close()
            except RuntimeError:  # the widget's C++ side is already gone
                return False
            if not allowed:
                event.ignore()
                return True
        return False
