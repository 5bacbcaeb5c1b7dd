"""The zoo's own modules (zoo.py, server.py) import from this folder."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))


def pytest_sessionfinish(session, exitstatus):
    """Under make test (REQUIRE_NO_SKIP=1) a skipped test is a failure, as in every suite."""
    import os

    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = len(reporter.stats.get("skipped", [])) if reporter else 0
    if os.environ.get("REQUIRE_NO_SKIP") == "1" and skipped:
        print(f"\nREQUIRE_NO_SKIP=1: {skipped} skipped tests count as failures")
        session.exitstatus = 1
