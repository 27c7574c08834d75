"""``python -m bias_suite.tools.train_demo``: the same as ``python -m bias_suite train-demo``."""

import sys

from bias_suite.tools.train_demo.train import main

sys.exit(main())
