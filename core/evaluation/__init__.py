"""Measuring the tracker: DAVIS J&F metrics (`metrics`), the evaluation command (`davis`, `python -m core.eval`)
and the speed/memory benchmark (`bench`, `python -m core.bench`). Never imports core.train.
"""
