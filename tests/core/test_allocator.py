"""release_freed_memory (what the napari widget runs after each job): the pages a worker thread freed
go back to the system. Run in a child interpreter so no other test's malloc settings interfere."""

from __future__ import annotations

import subprocess
import sys

import pytest

SCRIPT = r"""
import os, threading
import numpy as np
from napari_genselfdiff.core.allocator import release_freed_memory

def rss_mb():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20

kept = []
def job():  # a worker thread: big temporaries freed, small results kept in between (fragmentation)
    big = [np.ones(200_000) for _ in range(100)]  # 100 x 1.6 MB
    kept.extend(np.ones(2_000) for _ in range(100))
    del big
for _ in range(3):
    t = threading.Thread(target=job)
    t.start()
    t.join()
before = rss_mb()
released = release_freed_memory()
print(before, rss_mb(), released)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc_trim")
def test_release_freed_memory_gives_a_worker_threads_freed_pages_back():
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=300, check=True)
    before, after, released = out.stdout.split()
    before, after = float(before), float(after)
    assert released == "True"
    # about 160 MB were freed by the threads while small arrays kept their heaps from shrinking
    assert before - after > 80.0, (before, after)
