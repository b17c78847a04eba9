"""Images in and out: the codec that reads and writes files and bytes as float32 HWC arrays
in [0, 1] (8/16-bit, gray, alpha; :mod:`kpac_tf.images.codec`), the per-format decoders and
encoders behind it, the graph-mode codecs for ``tf.data`` and SavedModels, the colour
profile / EXIF / XMP metadata, and sRGB <-> linear light. The submodules are imported on
use (nothing is imported here).
"""
