"""`python -m core.batch`: finding inputs and their annotations (`inputs`), processing one video into its outputs
(`worker`), and the command that runs them serially, in a process pool or on Ray (`cli`).
"""
