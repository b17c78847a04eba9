"""Training: the loop (one custom train step under any tf.distribute strategy,
:mod:`kpac_tf.train.loop`), its configuration, the losses (MAE, perceptual), the moving
average of the weights, strategies and precision, summaries and validation, and the work
directory with its checkpoints and record. The submodules are imported on use (nothing is
imported here).
"""
