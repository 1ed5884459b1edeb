"""Training of the MobileVOS teacher and students: configs, data, losses, the loop, `python -m core.train`."""
