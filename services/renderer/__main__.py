"""``python -m services.renderer``: run the renderer service until SIGTERM or Ctrl-C."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from services.renderer.server import create_server
from services.renderer.settings import RendererSettings
from storyboard_common.server import run_service
from storyboard_common.settings import load_settings


def main(argv: Sequence[str] | None = None) -> int:
    settings = load_settings(RendererSettings, argv, prog="storyboard-renderer")
    return run_service("renderer", settings, create_server)  # type: ignore[arg-type]


if __name__ == "__main__":
    sys.exit(main())
