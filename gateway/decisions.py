"""What the gateway decides about a storyboard's frames, as pure functions of what it knows: each attempt's seed and
adapters, whether a frame is tried again, which attempt is kept, which frames are left to make."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Hashable, Iterable, Mapping, Sequence
from typing import Any

from gateway.outputs import AttemptInfo
from storyboard.v1 import common_pb2
from storyboard.v1 import storyboards_pb2 as sb
from storyboard_common.validation import MAX_SEED

REFERENCE_FRAME = 1  # every other frame's character is measured against this one


def frame_seed(base_seed: int, frame: int, attempt: int) -> int:
    """The seed of an attempt at a frame: base + frame - 1 for first attempts, as the original did; retries get a
    seed hashed from all three, so they never collide with another frame's first attempt by construction."""
    if attempt == 1:
        return (base_seed + frame - 1) % (MAX_SEED + 1)
    digest = hashlib.sha256(f"{base_seed}:{frame}:{attempt}".encode()).digest()
    return int.from_bytes(digest[:8], "big") & MAX_SEED


def frame_adapters(
    plan: common_pb2.Plan, scene: common_pb2.Scene, extra: Sequence[common_pb2.AdapterRef]
) -> list[common_pb2.AdapterRef]:
    """The adapters a frame is drawn with: those of the characters it shows (each at its registered weight, 1.0
    unless set), then the request's own, each adapter once; where the request names a character's adapter too, its
    weight is the one used."""
    weights = {
        character.adapter: character.adapter_weight or 1.0
        for character in plan.characters
        if character.adapter and character.trigger_token in scene.trigger_tokens
    }
    weights.update((adapter.name, adapter.weight) for adapter in extra)
    return [common_pb2.AdapterRef(name=name, weight=weight) for name, weight in weights.items()]


def with_available_adapters(plan: common_pb2.Plan, available: frozenset[str] | None) -> common_pb2.Plan:
    """``plan`` with each character's adapter that the renderers lack left out, and a warning naming it: the character
    is then drawn from the prompt alone (its trigger token) rather than failing every frame. ``available`` None (the
    renderers could not be asked) leaves the plan as it is."""
    missing = [c for c in plan.characters if c.adapter and available is not None and c.adapter not in available]
    if not missing:
        return plan
    out = common_pb2.Plan()
    out.CopyFrom(plan)
    for character in out.characters:
        if character.adapter in {c.adapter for c in missing}:
            out.warnings.append(
                f"the renderers have no adapter {character.adapter!r}, so {character.name} is drawn from the prompt "
                f"alone ({character.trigger_token})"
            )
            character.adapter = ""
    return out


def attempt_numbers(max_retries: int) -> range:
    """The attempts a frame may have: the first, then up to ``max_retries`` more."""
    return range(1, max_retries + 2)


def tries_again(frame: int, verdict: int) -> bool:
    """Whether a frame whose latest attempt got ``verdict`` is rendered again (while retries are left). Frame 1 is
    the reference, measured against itself: its first attempt is always the one kept."""
    return verdict == common_pb2.VERDICT_LOW_CONSISTENCY and frame != REFERENCE_FRAME


def better(candidate: AttemptInfo, best: AttemptInfo | None) -> bool:
    """Whether ``candidate`` is kept over ``best``: higher consistency wins; an attempt without a score never replaces
    one with a score."""
    if best is None:
        return True
    if candidate.score is None:
        return False
    return best.score is None or candidate.score.consistency > best.score.consistency


def best_attempt(attempts: Iterable[AttemptInfo]) -> AttemptInfo | None:
    """The attempt ``better`` keeps among ``attempts``, the earliest of equals."""
    kept: AttemptInfo | None = None
    for attempt in attempts:
        if better(attempt, kept):
            kept = attempt
    return kept


def next_attempt_number(attempts: Iterable[AttemptInfo]) -> int:
    """The number of a frame's next attempt, after those it has."""
    return max((attempt.attempt for attempt in attempts), default=0) + 1


def frames_to_make(frames: Sequence[sb.FrameResult], present: Iterable[int]) -> list[int]:
    """The frames a run still makes: those not kept yet, and those kept whose file is gone (``present`` names the
    frames whose file is in the folder)."""
    on_disk = set(present)
    return [frame.frame for frame in frames if not frame.rendered or frame.frame not in on_disk]


def remember_description(meta: dict[str, Any], frame: int, prompt: str, description: str) -> None:
    """Record in a job's ``meta`` which description a frame had while it was drawn from ``prompt``."""
    meta.setdefault("descriptions", {}).setdefault(str(frame), {})[prompt] = description


def remembered_description(meta: dict[str, Any], frame: int, prompt: str) -> str:
    """The description a frame had while drawn from ``prompt`` (the prompt itself when none was recorded)."""
    return meta.get("descriptions", {}).get(str(frame), {}).get(prompt, prompt)


def group_size(frames: int, max_batch: int, replicas: int, slots: int, shared: bool) -> int:
    """How many first attempts of a storyboard go in one request. For a renderer that shares attention across a
    batch, as many as it batches (they are to be drawn together); else as many as spread the frames over every
    replica, batched where frames outnumber replicas. Never more than the frames the gateway has in flight."""
    if shared:
        return max(1, min(max_batch, frames))
    return max(1, min(max_batch, slots, math.ceil(frames / max(1, replicas))))


def first_attempt_groups(frames: Sequence[int], keys: Mapping[int, Hashable], size: int) -> list[list[int]]:
    """The frames whose first attempts go in one request: those a renderer would batch together (the same ``keys``),
    in frame order, at most ``size`` a request; the groups in the order of their first frames."""
    by_key: dict[Hashable, list[int]] = {}
    for frame in sorted(frames):
        by_key.setdefault(keys[frame], []).append(frame)
    groups = [members[start : start + size] for members in by_key.values() for start in range(0, len(members), size)]
    return sorted(groups, key=lambda group: group[0])


def adapter_set_key(adapters: Sequence[common_pb2.AdapterRef]) -> str:
    """The adapter set a frame is drawn with, as one string ("" for none): frames with the same key batch together,
    and a renderer keeps the set merged from one batch to the next."""
    return ";".join(sorted(f"{adapter.name}@{adapter.weight:g}" for adapter in adapters))


def adapter_replica(key: str, replicas: Sequence[str]) -> str:
    """The replica an adapter set goes to: the same one for the same set from every storyboard and every gateway,
    different sets spread over the replicas, and a replica that goes away moving only its own sets (rendezvous
    hashing)."""
    return max(replicas, key=lambda replica: hashlib.sha256(f"{key}\0{replica}".encode()).digest())
