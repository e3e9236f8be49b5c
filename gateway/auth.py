"""API keys: who may call the gateway, and how many storyboards each caller may have unfinished.

Keys are stored only as SHA-256 hashes (``NAME:SHA256HEX[:MAX_ACTIVE]`` entries, from a setting, its environment
variable or a file). SHA-256 suits keys that are long random tokens, as the ones made here are; a slow password hash
would only slow every call. A presented key is hashed and compared in constant time; neither it nor its hash is ever
logged or sent back.

    python -m gateway.auth new alice     # prints a new key (once) and the entry to configure
    python -m gateway.auth hash alice    # reads an existing key on stdin and prints its entry
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import re
import secrets
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from storyboard_common.errors import Unauthenticated

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_HEX = re.compile(r"^[0-9a-f]{64}$")
KEY_PREFIX = "sbk_"


@dataclass(frozen=True)
class Caller:
    """Who is calling: the key's name (``""`` for an anonymous caller on loopback) and how many of their storyboards
    are worked on at once (0: no limit)."""

    owner: str
    max_active: int


@dataclass(frozen=True)
class _KeyEntry:
    name: str
    digest: bytes
    max_active: int  # 0: the gateway's default


def hash_key(key: str) -> str:
    """The hex SHA-256 of an API key, as entries store it."""
    return hashlib.sha256(key.encode()).hexdigest()


def parse_entries(lines: Iterable[str], source: str) -> list[_KeyEntry]:
    """Entries ``NAME:SHA256HEX[:MAX_ACTIVE]``; ValueError names the source and entry number, never its content."""
    entries: list[_KeyEntry] = []
    for number, line in enumerate(lines, start=1):
        text = line.split("#", 1)[0].strip()
        if not text:
            continue
        parts = text.split(":")
        limit = parts[2] if len(parts) == 3 else "0"
        if len(parts) not in (2, 3) or not _NAME.match(parts[0]) or not _HEX.match(parts[1].lower()):
            raise ValueError(f"{source}: entry {number} is not NAME:SHA256HEX[:MAX_ACTIVE]")
        if not limit.isdigit():
            raise ValueError(f"{source}: entry {number} has a MAX_ACTIVE that is not a whole number")
        entries.append(_KeyEntry(parts[0], bytes.fromhex(parts[1].lower()), int(limit)))
    names = [entry.name for entry in entries]
    if len(set(names)) != len(names):
        raise ValueError(f"{source}: a key name appears twice")
    return entries


class ApiKeys:
    """Checks the ``authorization: Bearer <key>`` a call carries and says who the caller is."""

    def __init__(self, entries: Sequence[_KeyEntry], required: bool, default_max_active: int) -> None:
        if required and not entries:
            raise ValueError("API keys are required but none are configured")
        self._entries = tuple(entries)
        self.required = required
        self._default_max_active = default_max_active

    @classmethod
    def from_config(cls, inline: str, file: Path | None, required: bool, default_max_active: int) -> ApiKeys:
        """Keys from a comma-separated setting and/or a file of one entry per line."""
        entries = parse_entries(inline.split(","), "--api-keys")
        if file is not None:
            entries += parse_entries(file.read_text().splitlines(), str(file))
        names = [entry.name for entry in entries]
        if len(set(names)) != len(names):
            raise ValueError("a key name appears in both --api-keys and --api-keys-file")
        return cls(entries, required, default_max_active)

    def max_active_of(self, owner: str) -> int:
        """How many of ``owner``'s storyboards may be worked on at once: its entry's MAX_ACTIVE, else the default."""
        found = next((entry.max_active for entry in self._entries if entry.name == owner), 0)
        return found or self._default_max_active

    def authenticate(self, authorization: str | None) -> Caller:
        """The caller an ``authorization`` value belongs to; Unauthenticated when it is missing (and required),
        malformed or unknown."""
        if not self._entries:
            return Caller("", self._default_max_active)  # no keys configured (loopback only): nothing to check
        if not authorization:
            if self.required:
                raise Unauthenticated("an API key is required: send the header 'authorization: Bearer <key>'")
            return Caller("", self._default_max_active)
        scheme, _, token = authorization.strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise Unauthenticated("the authorization header must read 'Bearer <key>'")
        digest = hashlib.sha256(token.encode()).digest()
        found: _KeyEntry | None = None
        for entry in self._entries:  # every entry is compared, so timing says nothing about which one matched
            if hmac.compare_digest(digest, entry.digest):
                found = entry
        if found is None:
            raise Unauthenticated("the API key is not valid")
        return Caller(found.name, found.max_active or self._default_max_active)

    def from_metadata(self, metadata: Iterable[tuple[str, str | bytes]] | None) -> Caller:
        """The caller of a gRPC call, from its ``authorization`` metadata."""
        for key, value in metadata or ():
            if key == "authorization":
                return self.authenticate(value if isinstance(value, str) else value.decode(errors="replace"))
        return self.authenticate(None)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gateway.auth", description="Make API key entries.")
    commands = parser.add_subparsers(dest="command", required=True)
    new = commands.add_parser("new", help="make a new key; prints the key once, and its entry")
    new.add_argument("name")
    existing = commands.add_parser("hash", help="read a key on stdin; print its entry")
    existing.add_argument("name")
    args = parser.parse_args(argv)
    if not _NAME.match(args.name):
        parser.error("a name is letters, digits, _ . - (at most 64)")
    if args.command == "new":
        key = KEY_PREFIX + secrets.token_urlsafe(32)
        print(f"key (give it to the client; it is stored nowhere): {key}")
    else:
        key = sys.stdin.readline().strip()
        if not key:
            parser.error("no key on stdin")
    print(f"entry (for --api-keys or --api-keys-file): {args.name}:{hash_key(key)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
