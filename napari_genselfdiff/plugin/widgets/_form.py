"""How every panel lays itself out: a form of labelled fields, then buttons, bars and lists below it.

:func:`panel_layout` gives a panel its vertical layout (a :class:`QFormLayout` of ``(label, field)``
rows on top, then the other widgets and layouts in order); :func:`hbox` makes a row of widgets side
by side, one of them taking the spare width. plugin/_fit.py then makes the forms fit a narrow dock.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Union

from qtpy.QtWidgets import QFormLayout, QHBoxLayout, QLayout, QVBoxLayout, QWidget

#: A widget or a layout: what a form row holds and what stands below the form.
Item = Union[QWidget, QLayout]


def _add(layout: QHBoxLayout | QVBoxLayout, item: Item, stretch: int = 0) -> None:
    if isinstance(item, QLayout):
        layout.addLayout(item, stretch)
    else:
        layout.addWidget(item, stretch)


def hbox(*items: Item, stretch: int | None = None) -> QHBoxLayout:
    """``items`` side by side; the one at index ``stretch`` (None: none) takes the spare width."""
    row = QHBoxLayout()
    for k, item in enumerate(items):
        _add(row, item, 1 if k == stretch else 0)
    return row


def panel_layout(parent: QWidget, rows: Sequence[tuple[str, Item]], *below: Item) -> QVBoxLayout:
    """Set ``parent``'s layout: a form of ``rows`` (label "" for a field without one; no form when
    there are no rows), then each of ``below`` under it, top to bottom. Returns the layout."""
    layout = QVBoxLayout(parent)
    if rows:
        form = QFormLayout()
        for label, field in rows:
            form.addRow(label, field)
        layout.addLayout(form)
    for item in below:
        _add(layout, item)
    return layout
