"""Evaluation under the DPDD protocol: the engine that restores paired images and writes
the reports (:mod:`kpac_tf.evaluation.engine`, no flags), the metrics (PSNR, SSIM, MAE;
numpy only), the LPIPS port, and the classical oracle baselines. The submodules are
imported on use (nothing is imported here), so the numpy-only metrics load without
TensorFlow.
"""
