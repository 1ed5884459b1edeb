"""Training of the MobileVOS teacher and students: configs and presets, DAVIS data, the loop, `python -m core.train`.

The top layer with the commands: it imports the model, clips, inference and evaluation; nothing imports it.
"""
