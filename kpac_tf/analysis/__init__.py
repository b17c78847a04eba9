"""Analysis of the network and of the paper's claims: attention maps and modulation
(:mod:`kpac_tf.analysis.attention`), defocus blur detection from the scale attention, and
the inverse-kernel mathematics of the paper's Sec. 3 (numpy only). The submodules are
imported on use (nothing is imported here), so the numpy-only ones load without
TensorFlow.
"""
