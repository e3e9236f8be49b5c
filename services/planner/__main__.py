"""Run the planner service: ``python -m services.planner [--port 50052] [--backend offline|openai] ...``."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from services.planner.server import create_server
from services.planner.settings import PlannerSettings
from storyboard_common.server import run_service
from storyboard_common.settings import load_settings


def main(argv: Sequence[str] | None = None) -> int:
    """Start the planner and serve until SIGTERM or SIGINT."""
    settings = load_settings(PlannerSettings, argv, prog="storyboard-planner")
    return run_service("planner", settings, create_server)  # type: ignore[arg-type]


if __name__ == "__main__":
    sys.exit(main())
