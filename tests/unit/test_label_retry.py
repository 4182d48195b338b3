"""A version label refused while its version loads is applied once that version is AVAILABLE.

The daemon applies labels at READY and after a reload; a labelled version still loading then
is refused (TF Serving's rule). It must not stay missing: the ModelServer applies the
model's labels again on the version's AVAILABLE event. The loads are gated, so the test
decides when each version becomes AVAILABLE (no timing in the verdict).
"""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest

from servingd.config.models import ModelConfig
from servingd.config.settings import ServerSettings
from servingd.core.ids import ServableId
from servingd.core.loader import Loader
from servingd.core.states import ManagerState
from servingd.daemon.loaders import VersionLoaders
from servingd.daemon.model_server import ModelServer
from servingd.sources.version_policy import All
from tests.unit.fakes import WAIT_S, FakeLoader
from tests.unit.test_filesystem_source import make_version

LABELS = {"stable": 1, "canary": 2}


def test_label_of_a_loading_version_is_applied_when_it_becomes_available(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for version in (1, 2):
        make_version(tmp_path, version)
    gates = {1: threading.Event(), 2: threading.Event()}

    def make_loader(_loaders: VersionLoaders, servable_id: ServableId, path: str) -> Loader:
        return FakeLoader(servable_id, path=path, gate=gates[servable_id.version])

    monkeypatch.setattr(VersionLoaders, "__call__", make_loader)
    model = ModelConfig(
        "m", str(tmp_path), version_policy=All(), version_labels=LABELS, origin="test"
    )
    settings = ServerSettings(
        grpc_port=0,
        rest_port=0,
        models=(model,),
        file_system_poll_wait_s=0.0,
        version_settle_s=0.0,
    )

    async def scenario() -> None:
        server = ModelServer(settings)
        await server.start()
        try:

            def wait_available(version: int) -> None:
                def available() -> bool:
                    state = server.monitor.get_state(ServableId("m", version))
                    return state is not None and state.manager_state is ManagerState.AVAILABLE

                assert server.monitor.wait_until(available, WAIT_S), f"v{version} not AVAILABLE"

            gates[1].set()
            await asyncio.to_thread(wait_available, 1)
            # READY with version 2 still loading: the labels are refused, all or nothing.
            await server.apply_labels()
            assert server.labels.get("m") == {}
            gates[2].set()
            await asyncio.to_thread(wait_available, 2)
            # Whoever sees AVAILABLE finds the labels set (applied before the monitor hears).
            assert server.labels.get("m") == LABELS
            assert server.label_applier.pending() == {}
        finally:
            for gate in gates.values():
                gate.set()
            await server.stop(1.0)

    asyncio.run(scenario())
