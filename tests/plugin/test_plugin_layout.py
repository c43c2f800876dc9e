"""Every panel fits napari's dock at 1500x950, at the default dock width and at the widget's minimum
width, with the slide widget docked beside it too: no visible child reaches outside
its tab's visible area ("Cancel" cut to "Cance", "..." buttons off-screen) and none is squeezed below
its minimum size (rows drawn over each other). See plugin/_fit.py."""

from __future__ import annotations

import pytest

from napari_genselfdiff.plugin._fit import overflowing
from napari_genselfdiff.plugin._testing import PLUGIN, isolate, open_widget

pytestmark = pytest.mark.gui

SLIDE_WIDGET = "GenSelfDiff slide segmentation"


def _settle(ms: int = 300) -> None:
    from qtpy.QtTest import QTest

    QTest.qWait(ms)


def _problems(widget) -> dict[str, list[str]]:
    """Per tab: what sticks out of the tab's visible area or is squeezed."""
    out = {}
    for index in range(widget.tabs.count()):
        widget.tabs.setCurrentIndex(index)
        _settle(150)
        area = widget.tabs.widget(index)
        found = overflowing(area.viewport(), area.widget()) + overflowing(widget)
        if found:
            out[widget.tabs.tabText(index)] = found
    return out


def _narrow(viewer, widget, width: int) -> None:
    from qtpy.QtCore import Qt

    dock = widget.parent()
    viewer.window._qt_window.resizeDocks([dock], [width], Qt.Orientation.Horizontal)
    _settle()


def _docked(make_napari_viewer, tmp_path, monkeypatch):
    isolate(monkeypatch, tmp_path)
    viewer = make_napari_viewer(show=True)
    viewer.window._qt_window.resize(1500, 950)
    widget = open_widget(viewer)
    widget.close_policy = "stop"
    widget.pretrain_section.expand(animate=False)  # the longest tab, opened
    _settle()
    return viewer, widget


def test_every_tab_fits_the_default_dock_width_and_the_narrowest(make_napari_viewer, tmp_path, monkeypatch):
    viewer, widget = _docked(make_napari_viewer, tmp_path, monkeypatch)
    assert _problems(widget) == {}
    _narrow(viewer, widget, widget.minimumWidth())
    assert widget.width() <= widget.minimumWidth() + 2  # the dock did narrow
    assert _problems(widget) == {}
    # the Cancel and "..." buttons are whole: their text fits in them
    panel = widget.finetune_panel
    for button in (panel.controls.cancel, panel.controls.pause):
        assert button.width() >= button.minimumSizeHint().width()


def test_panels_fit_with_the_slide_widget_docked_too(make_napari_viewer, tmp_path, monkeypatch):
    viewer, widget = _docked(make_napari_viewer, tmp_path, monkeypatch)
    _, slide = viewer.window.add_plugin_dock_widget(PLUGIN, SLIDE_WIDGET)
    _settle()
    assert _problems(widget) == {}
    assert overflowing(slide) == []
    _narrow(viewer, widget, widget.minimumWidth())
    assert _problems(widget) == {} and overflowing(slide) == []
