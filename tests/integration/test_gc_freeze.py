"""The daemon freezes start-up's objects once TensorFlow is imported and before any model
loads (daemon.gc_freeze): its full garbage collections skip TensorFlow's ~300,000 import-time
objects, and a version's graph, loaded after, stays collectable."""

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
    frozen = re.search(r"froze (\d+) start-up objects", log)
    assert frozen is not None, log
    assert int(frozen.group(1)) >= MIN_FROZEN
    loaded = log.index("Loaded servable")
    assert frozen.start() < loaded, "the first version was loaded before the freeze"
