"""MQTT client layer shared by the edge and the hub."""

from shared.mqtt.communicator import Communicator, RawHandler
from shared.mqtt.delivery import Delivery, OutgoingMessage, build_message, deliver
from shared.mqtt.memory import InMemoryBroker, InMemoryCommunicator
from shared.mqtt.messenger import Messenger, status_will
from shared.mqtt.paho_client import PahoCommunicator

__all__ = [
    "Communicator",
    "Delivery",
    "InMemoryBroker",
    "InMemoryCommunicator",
    "Messenger",
    "OutgoingMessage",
    "PahoCommunicator",
    "RawHandler",
    "build_message",
    "deliver",
    "status_will",
]
