"""Storyboard: turn a story into a storyboard. The Python client, the `storyboard` CLI and the storyboard.v1 stubs."""

__version__ = "0.1.0"
