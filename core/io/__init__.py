"""Files in and out: video containers and frame folders (`video`), palette-PNG label maps (`masks`).

The bottom layer: it imports nothing else from core.
"""
