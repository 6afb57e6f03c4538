"""The course run's memory column (``mlops-lab run``): a page is counted once."""

import subprocess
import sys
import textwrap

import pytest

from mlops_lab.notebooks import _PeakMemory

FORKS = textwrap.dedent("""
    import os, time
    import numpy
    held = numpy.ones(150 * 2**20 // 8)  # 150 MB of its own, written
    pid = os.fork()
    if pid == 0:  # shares those 150 MB with its parent, and writes 50 MB of its own
        more = numpy.ones(50 * 2**20 // 8)
        time.sleep(2)
        os._exit(0)
    time.sleep(2)
    os.waitpid(pid, 0)
""")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="fork and /proc: Linux")
@pytest.mark.parametrize("launched", ["directly", "through a launcher"])
def test_a_forked_copy_is_counted_once_and_its_own_memory_is_counted(launched):
    # through a launcher: as Binder's kernels, forked from a process a small launcher started
    command = [sys.executable, "-c", FORKS]
    if launched == "through a launcher":
        command = [sys.executable, "-c", f"import subprocess, sys; subprocess.run({command!r}, check=True)"]
    # another child of this process, as a server a fixture keeps: not part of what is measured
    other = subprocess.Popen([sys.executable, "-c", "import numpy, time; x = numpy.ones(100 * 2**17); time.sleep(30)"])
    try:
        process = subprocess.Popen(command)
        with _PeakMemory(interval=0.05, root=process.pid) as memory:
            assert process.wait(timeout=60) == 0
    finally:
        other.kill()
    peak_mb = memory.peak / 2**20
    # 150 + 50 MB, plus the interpreter and numpy (~30-60 MB); counting the fork's shared pages again
    # would add another 150 MB and more
    assert 200 <= peak_mb < 300, f"{peak_mb:.0f} MB"
