"""Functions for `pygigo dev tests.dev_functions`: private, as a user's functions are by default."""

from __future__ import annotations

import pygigo


@pygigo.function(queue="dev-math")
def multiply(x: int, y: int) -> int:
    return x * y
