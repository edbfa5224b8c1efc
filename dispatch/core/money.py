"""Money on the wire: integer minor units with an ISO 4217 currency code."""

from __future__ import annotations

import pycountry

# Funds, precious metals, bond units and the testing/no-currency codes (XAU, XTS, XXX, ...) are
# not what a resident pays a handyman in; the X-codes that are real money stay.
_REAL_X = frozenset({"XAF", "XCD", "XOF", "XPF"})
CURRENCY_CODES: tuple[str, ...] = tuple(
    sorted(
        c.alpha_3
        for c in pycountry.currencies
        if not c.alpha_3.startswith("X") or c.alpha_3 in _REAL_X
    )
)
"""ISO 4217 codes accepted for a job's price."""
