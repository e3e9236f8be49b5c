"""``python -m gateway``: run the Storyboard gateway until SIGTERM."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from gateway.server import create_server
from gateway.settings import GatewaySettings
from storyboard_common.server import run_service
from storyboard_common.settings import load_settings


def main(argv: Sequence[str] | None = None) -> int:
    settings = load_settings(GatewaySettings, argv, prog="storyboard-gateway")
    return run_service("gateway", settings, create_server)


if __name__ == "__main__":
    sys.exit(main())
