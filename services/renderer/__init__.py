"""The renderer service: prompts in, frames out, streamed as they finish with per-step progress.

Backends: ``sketch`` (CPU storyboard layout panels that need no weights; a preview, labelled SKETCH) and
``diffusers`` (SDXL + LoRA adapters by name). See ``backend.py`` for the interface every backend implements and
README.md for settings, adapter formats and metrics.
"""
