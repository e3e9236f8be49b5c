"""What a render backend is: the frames it is given, what it reports back, and the interface every backend implements.

The scheduler hands a backend a *batch*: a list of compatible frames (same size, steps, guidance, adapters and reference
pictures; see ``FrameSpec.batch_key``), possibly from several requests. A backend that can (diffusers) renders the batch
in one pipeline call with one generator per frame; one that cannot (sketch) draws the frames one after another. Frames
in a batch are identified by their *index in the list*, not by their frame number, because two requests in one batch can
both have a frame 1.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from PIL import Image


@dataclass(frozen=True)
class AdapterWeight:
    """A LoRA adapter, by name, at a weight."""

    name: str
    weight: float


@dataclass(frozen=True)
class SceneHints:
    """What the scene a frame illustrates is about; the sketch backend lays its panel out from these."""

    description: str = ""
    camera: str = ""
    mood: str = ""
    setting: str = ""
    lighting: str = ""
    characters: tuple[str, ...] = ()  # trigger tokens of the characters in the scene, as the planner named them


@dataclass(frozen=True)
class ReferencePicture:
    """One reference picture of a character, decoded; frames compare pictures by the digest of their bytes."""

    digest: str  # sha256 of the encoded bytes, hex
    image: Image.Image = field(compare=False, repr=False)


@dataclass(frozen=True)
class CharacterReference:
    """A character's reference pictures and how strongly they condition a frame (IP-Adapter; 0: the default)."""

    trigger_token: str
    pictures: tuple[ReferencePicture, ...]
    scale: float = 0.0


@dataclass(frozen=True)
class FrameSpec:
    """Everything needed to draw one frame, already validated. A frame is a pure function of these and the model."""

    frame: int
    prompt: str
    seed: int
    width: int
    height: int
    steps: int
    guidance_scale: float
    prompt_2: str = ""
    negative_prompt: str = ""
    adapters: tuple[AdapterWeight, ...] = ()
    scene: SceneHints | None = None
    deterministic: bool = False  # rendered alone, so that no batch-mate can move its pixels by rounding
    # The reference pictures of the characters it shows; empty unless the backend applies them (an IP-Adapter).
    references: tuple[CharacterReference, ...] = ()

    @property
    def batch_key(self) -> tuple[object, ...]:
        """Frames with equal keys can share one pipeline call (prompts, negatives and seeds may differ per frame);
        a deterministic frame shares none (see ``RenderScheduler``). Frames with other reference pictures or scales
        are batched apart: an IP-Adapter has one scale per pipeline call."""
        return (
            self.width,
            self.height,
            self.steps,
            self.guidance_scale,
            self.adapters,
            self.deterministic,
            self.references,
        )


@dataclass(frozen=True)
class BackendTimings:
    """Seconds a backend spent on one frame; a batched frame reports its batch's times."""

    denoise_seconds: float = 0.0
    decode_seconds: float = 0.0


@dataclass(frozen=True)
class FrameResult:
    """A finished frame: its index in the batch it was given with, the picture, and how long it took.

    A frame that failed on its own while the rest of its batch is fine (e.g. it came out NaN) has no image and an
    ``error`` (a ``ServiceError``) that is raised to its request only.
    """

    index: int
    image: Image.Image | None
    timings: BackendTimings = field(default_factory=BackendTimings)
    error: Exception | None = None


@dataclass(frozen=True)
class BackendDescription:
    """How a backend describes itself in Info."""

    name: str
    model: str
    device: str
    dtype: str
    loaded_adapters: tuple[str, ...] = ()
    ip_adapter: bool = False  # an IP-Adapter is loaded: FrameSpec.references condition frames
    consistency: str = "off"  # how frames of a batch are kept alike: "off" or "shared-attention"


# on_step(index, step, total): the frame at ``index`` of the batch finished step ``step`` of ``total`` (1-based).
StepCallback = Callable[[int, int, int], None]
# should_stop(): True once nobody wants the batch any more (cancelled, deadline passed, server stopping).
StopCheck = Callable[[], bool]


@runtime_checkable
class RenderBackend(Protocol):
    """Draws frames. Called from one scheduler thread at a time, so an implementation need not be thread-safe.

    ``render`` must check ``should_stop`` at every step and, once it is true, return at the next step without
    yielding the unfinished frames (diffusers: ``callback_on_step_end`` sets ``pipe._interrupt``). A failure that a
    caller can act on is raised as a ``storyboard_common.errors.ServiceError`` (e.g. ResourceExhausted on out of
    memory); the scheduler passes it to every request of the batch and goes on serving.
    """

    #: Short name reported on every frame and in Info: "sketch" or "diffusers".
    name: str
    #: Whether adapters change the output. When True, requests naming adapters need a configured adapters folder.
    applies_adapters: bool
    #: Whether FrameSpec.references change the output (an IP-Adapter is loaded). When False, requests' reference
    #: pictures are not even decoded.
    applies_references: bool
    #: PNG level its frames are sent at unless --png-level says otherwise (see images.encode): what suits its pictures.
    png_level: int

    def describe(self) -> BackendDescription:
        """Model, device, dtype and loaded adapters, for Info."""
        ...

    def warm_up(self) -> None:
        """Load weights and render once, so the first request is not the slow one. Health is NOT_SERVING until
        this returns; raising leaves the service NOT_SERVING with the error as its reason."""
        ...

    def render(
        self, frames: Sequence[FrameSpec], on_step: StepCallback, should_stop: StopCheck
    ) -> Iterator[FrameResult]:
        """Render ``frames`` (a compatible batch), yielding each frame as it finishes, in the order they finish."""
        ...

    def close(self) -> None:
        """Release weights and device memory. Called once, when the server stops."""
        ...
