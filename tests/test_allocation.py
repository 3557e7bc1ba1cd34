"""asr.allocation: large buffers are reused instead of faulted in afresh."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

COUNT_FAULTS = """
import json, resource
import asr
import numpy as np
faults = []
for _ in range(6):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    a = np.ones(16 << 20, np.float32)  # 64 MiB, touched
    del a
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(json.dumps(faults))
"""


def page_faults(**env) -> list[int]:
    out = subprocess.run(
        [sys.executable, "-c", COUNT_FAULTS],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, **env},
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's allocator (Linux)")
def test_a_freed_large_array_is_reused_without_page_faults():
    tuned = page_faults()
    default = page_faults(PARAKEET_NO_MALLOC_TUNING="1")
    # glibc's default maps every array afresh: each faults in as many times as the first
    assert min(default[1:]) >= 0.5 * default[0] > 0
    # reused: the first array's pages serve the rest
    assert max(tuned[1:]) <= 0.05 * tuned[0]
