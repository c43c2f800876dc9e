"""Many slides over a Dask distributed cluster: one slide per task, results written by the workers.

:func:`segment_slides_on_cluster` starts a ``LocalCluster`` of ``workers`` processes (or connects to
an existing scheduler at ``scheduler``, e.g. ``tcp://10.0.0.5:8786`` started with ``dask scheduler``
and ``dask worker`` on the lab's machines or through dask-jobqueue), submits one task per slide and
reports each as it finishes. Each task opens the model file and the slide itself and writes
``<stem>_labels.zarr`` (and ``<stem>_nuclei.geojson``) into the output folder, so the model file, the
slides and the output folder must be at the same paths on every worker (a shared file system).

A slide that fails (unreadable, no resolution, a full disk, even a worker that dies) is reported
with its message and the other slides are still finished.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

_MODELS: dict[tuple[str, float, str], tuple[Any, Any]] = {}


def _load(model_path: str, device: str):
    """The model, loaded once per worker process (keyed by path, modification time and device)."""
    from ..model_files import resolve_model
    from .device import choose_device

    key = (model_path, os.path.getmtime(model_path), device)
    if key not in _MODELS:
        _MODELS.clear()
        network, info = resolve_model(Path(model_path), device=choose_device(device))
        _MODELS[key] = (network, info)
    return _MODELS[key]


def segment_slide_task(model_path: str, slide_path: str, out_dir: str, settings, overwrite: bool = False,
                       threads: int | None = None, restart: bool = False) -> dict[str, Any]:
    """Segment one slide on a worker; never raises: returns ``{"slide", "ok", "error" | "result"}``."""
    try:
        import torch

        from .slide import segment_slide

        if threads:
            torch.set_num_threads(int(threads))
        network, info = _load(str(model_path), settings.inference.device)
        result = segment_slide(network, info, slide_path, out_dir, settings, overwrite=overwrite, restart=restart)
        return {"slide": str(slide_path), "ok": True, "result": result.to_dict()}
    except Exception as exc:  # noqa: BLE001 - every failure is reported per slide, the others go on
        message = " ".join(str(exc).split()) or type(exc).__name__
        if str(slide_path) not in message:
            message = f"{slide_path}: {message}"
        return {"slide": str(slide_path), "ok": False, "error": message}


def segment_slides_on_cluster(
    slides: Iterable[str | Path],
    model_path: str | Path,
    out_dir: str | Path,
    settings,
    *,
    workers: int | None = None,
    scheduler: str | None = None,
    overwrite: bool = False,
    restart: bool = False,
    processes: bool = True,
    threads_per_task: int | None = None,
    on_result: Callable[[dict[str, Any]], None] | None = None,
) -> list[dict[str, Any]]:
    """Segment ``slides`` on a cluster, one task per slide.

    Args:
        slides: slide files (paths valid on the workers).
        model_path: the model file (a path valid on the workers).
        out_dir: the output folder (created; a path valid on the workers).
        settings: a :class:`.slide.SlideSettings`.
        workers: start a LocalCluster with this many workers (one slide at a time each).
        scheduler: address of a running Dask scheduler (``tcp://host:8786``); overrides ``workers``.
        overwrite: replace existing outputs.
        restart: discard unfinished stores of earlier runs (by default a matching one is continued).
        processes: LocalCluster workers as processes (True: no shared GIL) or threads.
        threads_per_task: torch threads per task; by default the machine's cores / workers (LocalCluster).
        on_result: called with each task's report as it finishes (for progress lines).

    Returns:
        The reports, in completion order: ``{"slide", "ok": True, "result": {...}}`` or
        ``{"slide", "ok": False, "error": message}``.
    """
    from distributed import Client, LocalCluster, as_completed

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    cluster = None
    if scheduler:
        client = Client(scheduler)
    else:
        n = max(1, int(workers or 1))
        threads_per_task = threads_per_task or max(1, (os.cpu_count() or 1) // n)
        cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=processes, dashboard_address=None)
        client = Client(cluster)
    reports: list[dict[str, Any]] = []
    try:
        futures = {}
        for path in slides:
            future = client.submit(segment_slide_task, str(model_path), str(path), str(out_dir), settings,
                                   overwrite, threads_per_task, restart, pure=False, key=f"segment-slide-{Path(path).name}-{len(futures)}")
            futures[future] = str(path)
        for future in as_completed(futures):
            try:
                report = future.result()
            except Exception as exc:  # noqa: BLE001 - a worker that died, a lost connection
                report = {"slide": futures[future], "ok": False,
                          "error": f"{futures[future]}: the task failed on the cluster ({type(exc).__name__}: {exc})"}
            reports.append(report)
            if on_result is not None:
                on_result(report)
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
    return reports
