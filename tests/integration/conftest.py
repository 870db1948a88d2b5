"""A whole system on the session's Mosquitto: hub, simulated ERs and an ambulance."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from edge_agent.agent import EdgeAgent
from edge_agent.settings import load_edge_settings
from hospital_hub.registry import read_registry
from hospital_hub.runtime import HubRuntime
from hospital_hub.settings import SAMPLE_REGISTRY, load_hub_settings
from hospital_hub.simulated_er import Policy, SimulatedEr
from shared import topics
from shared.messages import OfferV1
from shared.mqtt import PahoCommunicator
from shared.settings import MqttSettings
from tests.images import chest_like_png


def accept_rank(rank: int) -> Policy:
    """ERs accept only the offer of this rank and decline the others."""

    def policy(hospital_id: str, case_id: str, offer: OfferV1):  # type: ignore[no-untyped-def]
        return ("accept", None) if offer.rank == rank else ("decline", "test: full")

    return policy


@dataclass
class System:
    hub: HubRuntime
    edge: EdgeAgent
    settings: MqttSettings
    ers: dict[str, SimulatedEr] = field(default_factory=dict)

    def stop(self) -> None:
        self.edge.stop()
        for er in self.ers.values():
            er.stop()
        self.hub.stop()
        # A stopped ER leaves its retained "offline" status, which would rank the
        # sample ERs out of every later hub's offers on this shared broker.
        cleaner = PahoCommunicator(self.settings.model_copy(update={"session_expiry_s": 0}),
                                   client_id=f"clean-{self.edge.ambulance_id}")
        cleaner.start()
        try:
            for hospital_id in self.ers:
                cleaner.publish(topics.ER_STATUS.topic(hospital_id=hospital_id), b"",
                                retain=True)
        finally:
            cleaner.stop()


@pytest.fixture
def xray(tmp_path: Path) -> Path:
    """A small synthetic image shaped like a chest X-ray (not a real one)."""
    return chest_like_png(tmp_path / "synthetic.png")


@pytest.fixture
def make_system(mqtt_settings: MqttSettings, uid: str) -> Iterator[Callable[..., System]]:
    systems: list[System] = []

    def make(database_url: str, policy: Policy | None = None, er_delay_s: float = 0.05,
             **hub_overrides: object) -> System:
        hub = HubRuntime(load_hub_settings(hub_id=f"hub-{uid}", database_url=database_url,
                                           mqtt=mqtt_settings, maintenance_interval_s=0.2,
                                           **hub_overrides))
        hub.start()
        ers = {}
        for hospital in read_registry(SAMPLE_REGISTRY):
            er = SimulatedEr.connect(hospital.id, mqtt_settings, policy or accept_rank(1),
                                     client_id=f"er-{hospital.id}-{uid}", delay_s=er_delay_s)
            er.start()
            ers[hospital.id] = er
        edge = EdgeAgent(load_edge_settings(ambulance_id=f"amb-{uid}", mqtt=mqtt_settings,
                                            lat=42.3467, lon=-71.0972))
        edge.start()
        system = System(hub, edge, mqtt_settings, ers)
        systems.append(system)
        return system

    yield make
    for system in systems:
        system.stop()
