"""Counting prompt tokens exactly as SDXL's CLIP tokenizers do, offline.

SDXL's pipelines tokenize with transformers' ``CLIPTokenizer`` and keep a 77-token window (BOS and EOS included).
Its BPE vocabulary ships inside open_clip (``bpe_simple_vocab_16e6.txt.gz``, 49,408 tokens); we build the same
tokenizer from that file without importing open_clip (which would pull in torch) and without any download.
"""

from __future__ import annotations

import gzip
import importlib.util
import threading
from functools import lru_cache
from pathlib import Path

from storyboard_common.errors import FailedPrecondition

CLIP_WINDOW = 77  # tokens, BOS and EOS included
_VOCAB_NAME = "bpe_simple_vocab_16e6.txt.gz"
_MERGES = 49152 - 256 - 2  # the merges OpenAI's CLIP uses from that file


def bundled_vocab_path() -> Path | None:
    """open_clip's bundled BPE vocabulary, found without importing open_clip; None when it is not installed."""
    spec = importlib.util.find_spec("open_clip")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / _VOCAB_NAME
    return path if path.is_file() else None


def _bytes_to_unicode() -> dict[int, str]:
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    codes = printable[:]
    extra = 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            codes.append(256 + extra)
            extra += 1
    return dict(zip(printable, (chr(code) for code in codes), strict=True))


def build_clip_tokenizer(path: Path):  # type: ignore[no-untyped-def]
    """A transformers ``CLIPTokenizer`` with OpenAI CLIP's vocabulary, built from the BPE file at ``path`` (the one
    open_clip ships): the same ids SDXL's tokenizers produce, without downloading anything."""
    try:
        from transformers import CLIPTokenizer
    except ImportError as error:
        raise FailedPrecondition(f"cannot count CLIP tokens: transformers is not installed ({error})") from None
    try:
        with gzip.open(path) as stream:
            lines = stream.read().decode("utf-8").split("\n")[1 : _MERGES + 1]
    except (OSError, EOFError, UnicodeDecodeError) as error:
        raise FailedPrecondition(f"cannot read the CLIP vocabulary {path}: {error}") from None
    if len(lines) < _MERGES:
        raise FailedPrecondition(f"{path} is not a CLIP BPE vocabulary ({len(lines)} merges)")
    merges = [tuple(line.split()) for line in lines]
    symbols = list(_bytes_to_unicode().values())
    vocab = [*symbols, *(symbol + "</w>" for symbol in symbols), *("".join(m) for m in merges)]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    return CLIPTokenizer(vocab={token: i for i, token in enumerate(vocab)}, merges=merges)


class ClipTokenCounter:
    """Counts tokens of a prompt the way SDXL's tokenizers see it."""

    def __init__(self, vocab_path: Path | None = None) -> None:
        path = vocab_path or bundled_vocab_path()
        if path is None:
            raise FailedPrecondition(
                "cannot count CLIP tokens: open_clip's BPE vocabulary is not installed; install open_clip_torch "
                "or set --clip-vocab-file to a bpe_simple_vocab_16e6.txt.gz"
            )
        self._tokenizer = build_clip_tokenizer(path)
        self._lock = threading.Lock()

    def ids(self, text: str) -> list[int]:
        """The token ids of ``text`` with BOS and EOS, untruncated."""
        with self._lock:
            return list(self._tokenizer(text, add_special_tokens=True, truncation=False)["input_ids"])

    def count(self, text: str) -> int:
        """How many tokens ``text`` takes in CLIP's window, BOS and EOS included."""
        return len(self.ids(text))

    def fits(self, text: str, window: int = CLIP_WINDOW) -> bool:
        return self.count(text) <= window


@lru_cache(maxsize=4)
def shared_counter(vocab_path: Path | None = None) -> ClipTokenCounter:
    """One counter per vocabulary file per process (building one takes a fraction of a second)."""
    return ClipTokenCounter(vocab_path)
