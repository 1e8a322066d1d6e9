"""Inference: engines that turn a clinical note into irAE findings with evidence spans."""
