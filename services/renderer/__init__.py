"""The renderer service: prompts in, frames out, streamed as they finish with per-step progress.

Backends: ``sketch`` (CPU storyboard layout panels that need no weights; a preview, labelled SKETCH) and, in a later
build, ``diffusers`` (SDXL + LoRA). See ``backend.py`` for the interface every backend implements.
"""
