"""User messages: the full sentence in the panel's status line, a short one in a napari notification.

napari shows a notification as a toast of one elided line (about 45 characters at the default font),
so a long message there is cut off after its first 40-odd characters. The rule of the widget: every job's last word (done,
cancelled, failed, and why) and every refusal goes IN FULL into the status line of the panel that
the user acted in, where it stays until that panel's next job; the toast carries a short sentence
that fits (:func:`toast_text`). :func:`tell` does both. The full text also goes to the log.

:func:`describe` turns exceptions into plain sentences.
"""

from __future__ import annotations

import logging

from ..core.errors import GenSelfDiffError

log = logging.getLogger("napari_genselfdiff")

#: the longest toast text that shows whole in napari's collapsed notification: its text is 300 px
#: wide and wraps at words, the first line showing (measured under Xvfb: 42 characters of ordinary
#: text take about 270 px of the default UI font)
TOAST_CHARS = 42


# info / warning / error: the full message to the log, its short form (toast_text) as a toast.


def info(message: str) -> None:
    from napari.utils.notifications import show_info

    log.info(message)
    show_info(toast_text(message))


def warning(message: str) -> None:
    from napari.utils.notifications import show_warning

    log.warning(message)
    show_warning(toast_text(message))


def error(message: str) -> None:
    from napari.utils.notifications import show_error

    log.error(message)
    show_error(toast_text(message))


def toast_text(message: str, limit: int = TOAST_CHARS) -> str:
    """A short form of ``message`` that fits a collapsed toast: the message itself when it fits, else
    its leading clauses ("Cannot segment: no model chosen: pick ..." -> "Cannot segment: no model
    chosen."), else its first words. Paths and details stay in the panel's status line."""
    message = " ".join(message.split())
    if len(message) <= limit:
        return message
    for sep in (": ", "; ", ". ", " (", ", "):
        parts = message.split(sep)
        if len(parts) < 2:
            continue
        head = parts[0]
        for part in parts[1:]:
            if len(head) + len(sep) + len(part) + 1 > limit:
                break
            head = head + sep + part
        head = head.rstrip(" .:;,")
        if 12 <= len(head) <= limit - 1:
            return head + "."
    head = ""
    for word in message.split(" "):
        if len(head) + len(word) + 4 > limit:
            break
        head = f"{head} {word}" if head else word
    return head.rstrip(" .:;,") + "..."


def tell(status, message: str, level: str = "info", toast: str | None = None) -> str:
    """Put ``message`` in full in the ``status`` line (a QLabel, or None) and show ``toast`` (by
    default :func:`toast_text` of the message) as a notification of ``level`` ("info", "warning",
    "error"); the full message goes to the log. Returns the message."""
    from napari.utils.notifications import show_error, show_info, show_warning

    if status is not None:
        status.setText(message)
    {"info": log.info, "warning": log.warning, "error": log.error}[level](message)
    short = toast if toast is not None else toast_text(message)
    {"info": show_info, "warning": show_warning, "error": show_error}[level](short)
    return message


def describe(exc: BaseException, action: str = "") -> str:
    """The sentence a user sees for an exception.

    Our own errors (:class:`GenSelfDiffError`) already say what is wrong and what to do, so their text
    is shown as it is; file system errors name the file and the reason; anything else is unexpected
    and gets its type (the traceback goes to the log).
    """
    if isinstance(exc, GenSelfDiffError):
        return str(exc)
    if isinstance(exc, OSError):
        where = f"{exc.filename}: " if getattr(exc, "filename", None) else ""
        return f"{action + ' failed: ' if action else ''}{where}{exc.strerror or exc}"
    if isinstance(exc, MemoryError):
        return f"{action + ' failed: ' if action else ''}out of memory. Try a smaller tile size or a smaller image."
    log.error("%s failed", action or "operation", exc_info=(type(exc), exc, exc.__traceback__))
    return f"{action + ' failed: ' if action else ''}{type(exc).__name__}: {exc}"


def report(exc: BaseException, action: str = "") -> str:
    """Show :func:`describe` of ``exc`` as an error notification and return the text."""
    text = describe(exc, action)
    error(text)
    return text
