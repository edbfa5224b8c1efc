"""Geography: H3 cells, distances, service-area shapes and their H3 covers, the live worker index.

Imports neither `dispatch` nor Litestar; everything here takes and returns plain values.
"""
