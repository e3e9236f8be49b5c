"""Run the validator: ``python -m services.validator --clip-model NAME_OR_local-dir:DIR [--clip-pretrained X]``."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from services.validator.server import create_server
from services.validator.settings import ValidatorSettings
from storyboard_common.server import run_service
from storyboard_common.settings import load_settings


def main(argv: Sequence[str] | None = None) -> int:
    """Start the validator and serve until SIGTERM or SIGINT."""
    settings = load_settings(ValidatorSettings, argv, prog="storyboard-validator")
    return run_service("validator", settings, create_server)


if __name__ == "__main__":
    sys.exit(main())
