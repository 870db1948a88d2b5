"""goldenhour's common package: the message contract, topics, settings and errors.

It imports nothing from ``edge_agent``, ``hospital_hub`` or ``training``.
"""

__version__ = "0.1.0"
