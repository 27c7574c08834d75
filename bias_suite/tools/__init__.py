"""Tools: runnable programs that ship with the package but are not part of the library API.

Each one is started from the command line, ``python -m bias_suite COMMAND``; the library never
imports them.

- ``bench`` (:mod:`bias_suite.tools.bench`): speed and memory of capture and of the metrics, as ratios
  measured side by side in one run.
- ``train-demo`` (:mod:`bias_suite.tools.train_demo`): trains the two shipped demonstrator checkpoints
  (:mod:`bias_suite.demo`) from scratch on CPU.
"""
