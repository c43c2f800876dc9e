"""PathEdit, the path field with a "..." button of the annotation, export and fine-tune panels."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.gui


def test_browse_writes_the_path_or_hands_it_on(qtbot, monkeypatch, tmp_path):
    from qtpy.QtWidgets import QFileDialog, QWidget

    from napari_genselfdiff.plugin.widgets._path_edit import PathEdit

    asked = []

    def dialog(parent, caption, start):
        asked.append((caption, start))
        return str(tmp_path / "chosen")

    monkeypatch.setattr(QFileDialog, "getExistingDirectory", dialog)
    host = QWidget()
    qtbot.addWidget(host)
    field = PathEdit("Pick a folder", text=" /typed ")
    host.setLayout(field)
    field.button.click()
    assert field.text() == str(tmp_path / "chosen") and asked == [("Pick a folder", " /typed ")]
    chosen = []
    handed = PathEdit("Pick", on_chosen=chosen.append)
    handed.browse()
    assert chosen == [str(tmp_path / "chosen")] and handed.text() == ""  # the receiver writes the field
    monkeypatch.setattr(QFileDialog, "getExistingDirectory", lambda *args: "")
    field.browse()  # cancelled: nothing changes
    assert field.text() == str(tmp_path / "chosen")
