"""The planner service: story in, storyboard plan out (scenes, SDXL prompts, negative prompt, warnings).

Backends: ``openai`` (the official client; any OpenAI-compatible server) and ``offline`` (deterministic rules, no
network). Every plan, whichever backend drafted it, is checked and fixed against the storyboard rules in
``rules.py`` before its prompts are written within CLIP's 77-token window.
"""
