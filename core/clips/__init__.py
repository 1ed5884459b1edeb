"""Augmented clips made on the training device from frames held in memory (`sampler`): the data of training
(real, synthetic and static-image clips) and of first-frame adaptation (clips from one annotated frame).
Imports nothing else from core.
"""
