"""Inference backends behind one interface, registered by key (``openvino``,
``onnxruntime``, ``torch``), each with its own pydantic config; the configs
join in one discriminated union so a settings file picks a backend by its
``kind``."""

from edge_agent.backends.base import (
    Backend,
    BackendConfig,
    OnnxRuntimeConfig,
    OpenVinoConfig,
    TorchConfig,
    create_backend,
    registered_backends,
)

__all__ = ["Backend", "BackendConfig", "OnnxRuntimeConfig", "OpenVinoConfig", "TorchConfig",
           "create_backend", "registered_backends"]
