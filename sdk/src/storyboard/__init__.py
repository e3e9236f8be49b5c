"""Storyboard: turn a story into a storyboard.

The Python client (``Client``, ``AsyncClient``), typed events, the ``storyboard`` CLI, and the generated
``storyboard.v1`` gRPC stubs.
"""

from storyboard.client import AsyncClient, Client, GenerateRun, make_spec
from storyboard.results import StoryboardResult

__all__ = ["AsyncClient", "Client", "GenerateRun", "StoryboardResult", "make_spec"]
__version__ = "0.1.0"
