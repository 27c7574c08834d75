"""A gate run: the per-process session and the controller's finish (wing 9), whole or in shards.

:mod:`~bias_suite.run.session` lives in every process that runs gate items: it expands the options into
cases, loads each model and benchmark once, measures and judges; :mod:`~bias_suite.run.records` is what one
case hands to the controller (typed, serialisable); :mod:`~bias_suite.run.finish` merges the records on the
controller, blesses, builds the card and says whether the run fails. A run can also be cut into shards of
its (model × benchmark) cells (:mod:`~bias_suite.run.shards`), whose cards :mod:`~bias_suite.run.merge`
proves whole and finishes as one run; :mod:`~bias_suite.run.launch` runs the shards on local processes, Ray
or Slurm (:mod:`~bias_suite.run.executors`) and merges them. Nothing here imports pytest (a shard is a
``python -m pytest`` subprocess). May import every wing below it (1–8).
"""
