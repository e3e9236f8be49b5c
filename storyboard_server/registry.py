"""Which character registry the local stack and in-process planning use when none is named.

Named (``--characters`` / ``--characters-file``, or ``$STORYBOARD_CHARACTERS``), it is that file. Otherwise the first
of ``./characters.toml`` (a project's own) and ``./examples/characters.toml`` (the repository's example, Aldar Kose)
that exists, so that the original's commands, run in the repository, put the character's trigger token in every
prompt. Otherwise none: stories are planned without registered characters.
"""

from __future__ import annotations

from pathlib import Path

DEFAULT_REGISTRIES = (Path("characters.toml"), Path("examples") / "characters.toml")


def characters_file(named: str | Path | None, folder: Path | None = None) -> Path | None:
    """The registry to use: ``named``, else the first default in ``folder`` (the working directory) that exists."""
    if named:
        return Path(named)
    folder = folder or Path.cwd()
    return next((path for path in DEFAULT_REGISTRIES if (folder / path).is_file()), None)
