"""Run one system against one broker in a fresh process (config from ``BENCH_*`` env vars).

Isolation matters: Dramatiq binds actors to a global broker at import time, and Pygigo reads
``PYGIGO_BROKER_URL`` once. Prints one JSON list of results on stdout; progress goes to stderr.
"""

from __future__ import annotations

import importlib
import json
import sys
import traceback

from bench.common import BenchConfig, Result
from bench.systems import SYSTEMS


def main(system: str) -> int:
    cfg = BenchConfig.from_env()
    try:
        results: list[Result] = importlib.import_module(SYSTEMS[system]).measure(cfg)
    except Exception as exc:
        traceback.print_exc()
        results = [Result(cfg.broker, system, system, status="error", note=f"{type(exc).__name__}: {exc}")]
    json.dump([r.to_dict() for r in results], sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
