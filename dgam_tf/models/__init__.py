"""DGAM models: attention head, classifier, CVAE and the per-stream model."""
