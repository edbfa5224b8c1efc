"""The live worker index: who is available where, right now, searchable by distance."""

from geo.live.base import Fix, LiveIndex, MoveResult, Nearby, ProfileChanged, WorkerStatus

__all__ = ["Fix", "LiveIndex", "MoveResult", "Nearby", "ProfileChanged", "WorkerStatus"]
