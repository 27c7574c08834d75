"""A gate run: the per-process session and the controller's finish (wing 9).

:mod:`~bias_suite.run.session` lives in every process that runs gate items: it expands the options into
cases, loads each model and benchmark once, measures and judges; :mod:`~bias_suite.run.records` is what one
case hands to the controller (typed, serialisable); :mod:`~bias_suite.run.finish` merges the records on the
controller, blesses, builds the card and says whether the run fails. Nothing here imports pytest. May
import every wing below it (1–8).
"""
