"""Tools: the command line's subcommands — runnable programs that ship with the package but are not part of the
library API.

Each one is started from the command line, ``bias-suite COMMAND`` (or ``python -m bias_suite COMMAND``; see
:mod:`bias_suite.__main__`); the library never imports them.

- ``launch`` (:mod:`bias_suite.tools.launch`): the gate in N shards on Ray, Slurm or local processes, merged.
- ``merge`` (:mod:`bias_suite.tools.merge`): shard cards merged into the whole run's card, verdict and exit code.
- ``render`` / ``diff`` (:mod:`bias_suite.tools.render`, :mod:`bias_suite.tools.diff`): a JSON card in any
  format again; the paired changes between two JSON cards.
- ``bench`` (:mod:`bias_suite.tools.bench`): speed and memory of capture and of the metrics, as ratios
  measured side by side in one run.
- ``train-demo`` (:mod:`bias_suite.tools.train_demo`): trains the two shipped demonstrator checkpoints
  (:mod:`bias_suite.demo`) from scratch on CPU.
"""
