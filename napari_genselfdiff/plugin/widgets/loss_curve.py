"""A small live loss curve drawn with QPainter (no plotting dependency).

Raw losses of diffusion training jump around a lot from step to step (each step draws other
timesteps), so the curve shows the raw points faintly and an exponential moving average on top, on
a log scale when the values span more than a factor of 20.
"""

from __future__ import annotations

import math

from qtpy.QtCore import QPointF, QRectF, Qt
from qtpy.QtGui import QColor, QFont, QPainter, QPainterPath, QPen
from qtpy.QtWidgets import QSizePolicy, QWidget


class LossCurve(QWidget):
    """Plot of (step, loss) points.

    Attributes:
        points: the (step, loss) pairs received, in order (tests read it).
        smoothing: weight of the previous average in the moving average. By default 0.9.
    """

    def __init__(self, title: str = "loss", parent=None) -> None:
        super().__init__(parent)
        self.title = title
        self.points: list[tuple[int, float]] = []
        self.smoothed: list[float] = []
        self.smoothing = 0.9
        self.setMinimumHeight(110)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Preferred)

    def add_point(self, step: int, loss: float | None) -> None:
        if loss is None or not math.isfinite(loss):
            return
        self.points.append((int(step), float(loss)))
        previous = self.smoothed[-1] if self.smoothed else float(loss)
        self.smoothed.append(self.smoothing * previous + (1 - self.smoothing) * float(loss)
                             if len(self.smoothed) else float(loss))
        self.update()

    def clear(self) -> None:
        self.points, self.smoothed = [], []
        self.update()

    def paintEvent(self, event) -> None:  # noqa: N802 - Qt's name
        painter = QPainter(self)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        palette = self.palette()
        painter.fillRect(self.rect(), palette.base())
        text_color = palette.text().color()
        font = QFont(painter.font())
        font.setPointSizeF(max(7.0, font.pointSizeF() * 0.85))
        painter.setFont(font)
        margin_l, margin_r, margin_t, margin_b = 46, 8, 16, 16
        plot = QRectF(margin_l, margin_t, max(10, self.width() - margin_l - margin_r),
                      max(10, self.height() - margin_t - margin_b))
        painter.setPen(QPen(text_color, 1))
        painter.drawRect(plot)
        if not self.points:
            painter.drawText(plot, Qt.AlignmentFlag.AlignCenter, f"{self.title}: no points yet")
            painter.end()
            return
        steps = [s for s, _ in self.points]
        values = [v for _, v in self.points] + self.smoothed
        lo, hi = min(values), max(values)
        log = lo > 0 and hi / lo > 20

        def fy(v: float) -> float:
            a, b = (math.log10(lo), math.log10(hi)) if log else (lo, hi)
            x = math.log10(v) if log else v
            frac = 0.5 if b == a else (x - a) / (b - a)
            return plot.bottom() - frac * plot.height()

        s0, s1 = min(steps), max(steps)

        def fx(s: int) -> float:
            return plot.left() + (0.5 if s1 == s0 else (s - s0) / (s1 - s0)) * plot.width()

        raw = QColor(text_color)
        raw.setAlpha(70)
        for series, pen in ((self.points, QPen(raw, 1)), (list(zip(steps, self.smoothed)), QPen(QColor(255, 140, 0), 2))):
            path = QPainterPath(QPointF(fx(series[0][0]), fy(series[0][1])))
            for s, v in series[1:]:
                path.lineTo(QPointF(fx(s), fy(v)))
            painter.setPen(pen)
            painter.drawPath(path)
            if len(series) == 1:
                painter.drawEllipse(QPointF(fx(series[0][0]), fy(series[0][1])), 2, 2)
        painter.setPen(QPen(text_color, 1))
        painter.drawText(QRectF(0, plot.top() - 6, margin_l - 4, 14), Qt.AlignmentFlag.AlignRight, f"{hi:.3g}")
        painter.drawText(QRectF(0, plot.bottom() - 8, margin_l - 4, 14), Qt.AlignmentFlag.AlignRight, f"{lo:.3g}")
        painter.drawText(QRectF(plot.left(), 0, plot.width(), margin_t), Qt.AlignmentFlag.AlignLeft,
                         f"{self.title}{' (log)' if log else ''}: {self.smoothed[-1]:.4g} (avg)")
        painter.drawText(QRectF(plot.left(), plot.bottom() + 1, plot.width(), margin_b), Qt.AlignmentFlag.AlignRight,
                         f"step {s1}")
        painter.end()
