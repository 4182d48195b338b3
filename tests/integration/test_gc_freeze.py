"""The daemon freezes start-up's objects once TensorFlow is imported (by the first SavedModel
version) and before that version loads (daemon.gc_freeze): its full garbage collections
skip TensorFlow's ~300,000 import-time objects, and a version's graph, loaded after, stays
collectable."""

from __future__ import annotations

import re
from pathlib import Path

from support.servingd_process import ServingdProcess

# TensorFlow's import alone leaves ~300,000 objects (seen: 302,120).
MIN_FROZEN = 100_000


def test_start_up_objects_are_frozen_before_the_first_model_loads(
    testdata: Path,
) -> None:
    model = testdata / "saved_model_half_plus_two_cpu"
    with ServingdProcess(["--model_name=hp2", f"--model_base_path={model}"], rest=False) as server:
        server.wait_healthy()
        log = server.output()
    # The daemon freezes at start, and again once the first SavedModel version imported
    # TensorFlow (a daemon of TF Lite models never does): the last freeze counts.
    loaded = log.index("Loaded servable")
    freezes = list(re.finditer(r"froze (\d+) start-up objects", log[:loaded]))
    assert freezes, f"the first version was loaded before any freeze:\n{log}"
    assert int(freezes[-1].group(1)) >= MIN_FROZEN
    assert log.index("TensorFlow imported for the first SavedModel version") < freezes[-1].start()
