"""Make a dock widget fit napari's dock at its default width and narrower.

The panels live in scroll areas whose horizontal scroll bar is off (the dock's width is the width the
user sees), so a panel whose *minimum* width is wider than the dock is cut off at the right edge
("Cancel" shown as "Cance", the "..." buttons off-screen). :func:`fit_narrow` lowers the minimum
widths that do not need to be wide:

- wide combo boxes ask for room for a few characters, not for their longest item (the item is elided);
- form layouts put a field under its label when the row does not fit side by side (a folded
  section must then grow with its rows: :func:`section`);
- long plain labels wrap.

:func:`overflowing` lists the visible children that stick out of a widget's area; the geometry test
(``tests/plugin/test_plugin_layout.py``) asserts that it is empty for every tab.
"""

from __future__ import annotations

#: a combo box wider than this (for its longest item) asks for room for COMBO_MIN_CHARS characters
#: only (its item is elided beyond that); narrower ones keep their natural width
COMBO_WIDE_PX = 160
COMBO_MIN_CHARS = 12
#: a label whose text is longer than this wraps (the form's own field labels are short and do not)
WRAP_LABELS_LONGER_THAN = 28


def fit_narrow(root) -> None:
    """Lower the minimum widths of ``root``'s children (see the module docstring)."""
    from qtpy.QtWidgets import QComboBox, QFormLayout, QLabel

    for combo in root.findChildren(QComboBox):
        if combo.minimumSizeHint().width() <= COMBO_WIDE_PX:
            continue
        combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        combo.setMinimumContentsLength(COMBO_MIN_CHARS)
    for form in root.findChildren(QFormLayout):
        form.setRowWrapPolicy(QFormLayout.RowWrapPolicy.WrapLongRows)
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
    for label in root.findChildren(QLabel):
        if len(label.text()) > WRAP_LABELS_LONGER_THAN and not label.wordWrap():
            label.setWordWrap(True)


def section(title: str, panel):
    """``panel`` in a folded section (superqt's ``QCollapsible``, folded to start with) whose open height
    follows the panel's height at its current width.

    ``QCollapsible`` caps its content at the height the panel wants at its *preferred* width; in a
    narrower dock the panel's form rows wrap and need more, and the rows were squeezed over each other.
    """
    from qtpy.QtCore import QEvent
    from qtpy.QtWidgets import QWidget
    from superqt import QCollapsible

    class _Section(QCollapsible):
        def eventFilter(self, watched, event) -> bool:  # noqa: N802 - Qt's name
            handled = super().eventFilter(watched, event)
            panel = watched
            if event.type() == QEvent.Type.Resize and self.isExpanded() and isinstance(panel, QWidget):
                if panel.hasHeightForWidth():
                    # the panel asks for the height of its rows at this width (wrapped or not)
                    panel.setMinimumHeight(max(panel.heightForWidth(panel.width()), 0))
                needed = max(panel.minimumHeight(), panel.sizeHint().height()) + 10
                if self.content().maximumHeight() < needed:
                    self.content().setMaximumHeight(needed)
            return handled

    folded = _Section(title)
    folded.setContentsMargins(0, 0, 0, 0)
    folded.addWidget(panel)
    folded.collapse(animate=False)
    return folded


def overflowing(area, root=None) -> list[str]:
    """The visible widgets under ``root`` (by default ``area`` itself) whose rectangle reaches outside
    ``area``'s rectangle, or that are narrower than their minimum size hint (squeezed, i.e. cut or
    overlapping a neighbour); one line each, empty when everything fits."""
    from qtpy.QtCore import QPoint, QRect
    from qtpy.QtWidgets import QAbstractSpinBox, QComboBox, QWidget

    root = area if root is None else root
    box = QRect(area.mapToGlobal(QPoint(0, 0)), area.size())
    out = []
    for child in root.findChildren(QWidget):
        if not child.isVisibleTo(area) or child.width() <= 0 or not child.isVisible():
            continue
        rect = QRect(child.mapToGlobal(QPoint(0, 0)), child.size())
        name = f"{type(child).__name__} {getattr(child, 'text', lambda: '')() if hasattr(child, 'text') else ''}".strip()
        if rect.right() > box.right() + 1 or rect.left() < box.left() - 1:
            out.append(f"{name}: x {rect.left()}..{rect.right()} outside {box.left()}..{box.right()}")
        if isinstance(child.parentWidget(), (QComboBox, QAbstractSpinBox)):
            continue  # their own line edit, sized by them
        hint = child.minimumSizeHint()
        if hint.isValid() and child.width() + 1 < hint.width():
            out.append(f"{name}: {child.width()} px wide, needs {hint.width()}")
        wraps = getattr(child, "wordWrap", lambda: False)()
        if hint.isValid() and not wraps and child.height() + 1 < hint.height():
            out.append(f"{name}: {child.height()} px high, needs {hint.height()} (squeezed over its neighbours)")
    return out
