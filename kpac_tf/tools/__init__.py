"""Tools a user of the installed package runs as ``python -m kpac_tf.tools.NAME``: fetch
training photographs, export scikit-image's photos, render a pool of training pairs,
average checkpoints, convert the LPIPS backbone, and name the packaged training recipes
(``python -m kpac_tf.tools.recipe``). Each is a command like the kpac-* ones
(:mod:`kpac_tf.cli.runner`): ``--help``, one error line, exit codes 0/1/2.
"""
