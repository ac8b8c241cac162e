"""An adapter whose driver is never installed, for the missing-driver test."""

import fakedriver  # type: ignore[import-not-found]  # noqa: F401
