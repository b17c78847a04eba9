"""Deployment: the serving signatures of a model, the SavedModel export in TF Serving's
layout (:mod:`kpac_tf.deploy.saved_model`), TFLite and ONNX conversion with their runners,
and clients for a served model. The submodules are imported on use (nothing is imported
here).
"""
