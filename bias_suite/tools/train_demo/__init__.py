"""Training tool for the embedded demonstrator (:mod:`bias_suite.demo`): rebuilds both shipped checkpoints.

``python -m bias_suite train-demo [--out DIR] [--seed 0] [--quick]`` (or ``python -m
bias_suite.tools.train_demo``) runs :func:`bias_suite.tools.train_demo.train.main`. The pipeline, in order:

- :mod:`~bias_suite.tools.train_demo.data`: the seeded training examples (a text corpus about scenes,
  rendered scenes with captions and questions);
- :mod:`~bias_suite.tools.train_demo.sequences`: examples → token ids, loss labels and pixels, and batches;
- :mod:`~bias_suite.tools.train_demo.recipe`: the demo models' sizes and the two arms' schedules
  (text-first, joint);
- :mod:`~bias_suite.tools.train_demo.vision_pretraining`: stage 0, the shared vision tower pretraining;
- :mod:`~bias_suite.tools.train_demo.train`: the training loop, saving, and the command line.

The library needs none of this at run time: the shipped checkpoints and the scoring code used to
evaluate them live in :mod:`bias_suite.demo`.
"""
