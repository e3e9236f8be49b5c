"""The Storyboard back-end services: planner, renderer, validator."""
