"""The KPAC network: its layers (shared atrous convolution, scale and shape attention,
the KPAC block), the one builder with its presets (:mod:`kpac_tf.model.builder`), padding
to the model's multiple, weights (own files, the authors' npz, bundled presets), model
size and cost, and the bfloat16 choice for this CPU. Images go in and come out as float32
NHWC in [0, 1]. The submodules are imported on use (nothing is imported here).
"""
