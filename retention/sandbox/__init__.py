"""A local Cartesia-compatible Agents API with generated demo data (`retention sandbox`)."""

from retention.sandbox.app import DroppedConnection, SandboxApp
from retention.sandbox.data import Dataset, DatasetSpec
from retention.sandbox.faults import Behaviour, Faults
from retention.sandbox.server import serve_in_thread

__all__ = [
    "Behaviour",
    "Dataset",
    "DatasetSpec",
    "DroppedConnection",
    "Faults",
    "SandboxApp",
    "serve_in_thread",
]
