"""The inline worker (``GENSELFDIFF_NOTHREADS``) reads a job's result through ``core.progress`` and
emits napari's callbacks in napari's order: yielded..., returned or aborted or errored, finished."""

from __future__ import annotations

from napari_genselfdiff.plugin._threading import SyncWorker


def _worker(job, log):
    worker = SyncWorker(job)
    worker.yielded.connect(lambda v: log.append(("yielded", v)))
    worker.returned.connect(lambda v: log.append(("returned", v)))
    worker.errored.connect(lambda e: log.append(("errored", str(e))))
    worker.aborted.connect(lambda: log.append(("aborted",)))
    worker.finished.connect(lambda: log.append(("finished",)))
    return worker


def test_a_finished_job_hands_over_its_return_value():
    log: list = []

    def job():
        yield 1
        yield 2
        return "result"

    _worker(job, log).start()
    assert log == [("yielded", 1), ("yielded", 2), ("returned", "result"), ("finished",)]


def test_quit_stops_between_two_yields_and_closes_the_job():
    log: list = []
    state = {"steps": 0, "closed": False}

    def job():
        try:
            for i in range(5):
                state["steps"] += 1
                yield i
            return "never"
        finally:
            state["closed"] = True

    worker = _worker(job, log)
    worker.yielded.connect(lambda v: worker.quit() if v == 1 else None)
    worker.start()
    assert log == [("yielded", 0), ("yielded", 1), ("aborted",), ("finished",)]
    assert state == {"steps": 2, "closed": True} and not worker.is_running

    log.clear()
    state["steps"] = 0
    early = _worker(job, log)
    early.quit()  # before it starts: nothing is computed
    early.start()
    assert log == [("aborted",), ("finished",)] and state["steps"] == 0


def test_an_error_goes_to_errored_then_finished():
    log: list = []

    def job():
        yield 1
        raise ValueError("bad input")

    _worker(job, log).start()
    assert log == [("yielded", 1), ("errored", "bad input"), ("finished",)]
