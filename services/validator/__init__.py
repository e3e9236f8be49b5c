"""The validator service: scores storyboard frames with open_clip for character consistency, prompt alignment and
repetition, in one batched forward pass per call, with an embedding cache keyed by image content."""
