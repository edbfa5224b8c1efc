"""Typed errors for bad geographic input; callers map them to 4xx answers."""

from __future__ import annotations


class GeoError(ValueError):
    """Base of geographic input errors; `code` is a stable machine-readable reason."""

    code = "invalid_geometry"


class InvalidShapeError(GeoError):
    code = "invalid_boundary"


class AreaTooLargeError(GeoError):
    code = "area_too_large"
