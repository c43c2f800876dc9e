"""User messages through napari notifications: one place that turns exceptions into plain sentences."""

from __future__ import annotations

import logging

from ..core.errors import GenSelfDiffError

log = logging.getLogger("napari_genselfdiff")


def info(message: str) -> None:
    from napari.utils.notifications import show_info

    log.info(message)
    show_info(message)


def warning(message: str) -> None:
    from napari.utils.notifications import show_warning

    log.warning(message)
    show_warning(message)


def error(message: str) -> None:
    from napari.utils.notifications import show_error

    log.error(message)
    show_error(message)


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
