"""Clients for a KPAC model served by TF Serving (the signatures: kpac_tf.deploy.signatures).

:class:`RestClient` talks to TF Serving's REST API (default port 8501) with the
standard library only. Its :meth:`RestClient.deblur_encoded` sends image files as
base64 (``{"b64": ...}``) to the ``encoded`` signature and gets PNG files back, which
is far smaller and faster than JSON arrays of floats; :meth:`RestClient.deblur` sends
float arrays to ``serving_default`` for callers that already hold pixels.

:class:`GrpcClient` uses the gRPC API (default port 8500) and needs the optional
``tensorflow-serving-api`` package; without it, constructing one raises ImportError
saying what to install.

Images are float32 NHWC in [0,1] for the float calls; encoded calls take and return
file bytes (PNG 8/16-bit or JPEG in, RGB PNG with the input's bit depth out).
"""
from __future__ import annotations

import base64
import json
import urllib.error
import urllib.request
from typing import Sequence

import numpy as np

__all__ = ["GrpcClient", "RestClient", "ServingError"]

ENCODED_SIGNATURE = "encoded"
SERVING_SIGNATURE = "serving_default"
# The dual-pixel input names (kpac_tf.model.builder.DUAL_PIXEL_VIEWS), spelled out here so that
# the client needs neither TensorFlow nor Keras.
_VIEWS = ("left", "right", "centre")


class ServingError(RuntimeError):
    """The server could not be reached or answered with an error; the message says which.

    Attributes:
        status: the HTTP status (REST) or gRPC status name, None if unreachable.
    """

    def __init__(self, message: str, status=None):
        super().__init__(message)
        self.status = status


def _as_bytes_list(images, what: str) -> list[bytes]:
    if isinstance(images, (bytes, bytearray, memoryview)):
        images = [images]
    result = [bytes(item) for item in images]
    if not result:
        raise ValueError(f"{what}: give at least one encoded image.")
    return result


def _byte_names(dual: bool) -> tuple[str, ...]:
    return tuple(f"{view}_bytes" for view in _VIEWS) if dual else ("image_bytes",)


class RestClient:
    """Client of TF Serving's REST predict API for one model.

    Args:
        base_url: the server, e.g. "http://localhost:8501".
        model_name: the name TF Serving serves the model under.
        version: a fixed version number, or None for the newest loaded one.
        timeout: seconds to wait for one answer.
    """

    def __init__(self, base_url: str = "http://localhost:8501", model_name: str = "kpac",
                 version: int | None = None, timeout: float = 120.0):
        self.base_url = base_url.rstrip("/")
        self.model_name = model_name
        self.version = version
        self.timeout = timeout

    @property
    def model_url(self) -> str:
        url = f"{self.base_url}/v1/models/{self.model_name}"
        return url if self.version is None else f"{url}/versions/{int(self.version)}"

    # -- plumbing ----------------------------------------------------------------------

    def _request(self, url: str, body: dict | None = None) -> dict:
        data = None if body is None else json.dumps(body).encode("utf-8")
        request = urllib.request.Request(
            url, data=data, method="GET" if body is None else "POST",
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                payload = response.read()
        except urllib.error.HTTPError as error:
            detail = error.read().decode("utf-8", "replace")
            try:
                detail = json.loads(detail).get("error", detail)
            except (ValueError, AttributeError):
                pass
            raise ServingError(
                f"{url} answered HTTP {error.code}: {_first_line(detail)}", status=error.code
            ) from error
        except (urllib.error.URLError, OSError) as error:
            reason = getattr(error, "reason", error)
            raise ServingError(
                f"Cannot reach TF Serving at {self.base_url} ({reason}); is the server "
                "running and is its REST port (--rest_api_port, default 8501) right?"
            ) from error
        try:
            return json.loads(payload)
        except ValueError as error:
            raise ServingError(f"{url} answered with something that is not JSON.") from error

    def status(self) -> dict:
        """TF Serving's model status (versions and their states)."""
        return self._request(self.model_url)

    def metadata(self) -> dict:
        """TF Serving's signature metadata of the model."""
        return self._request(f"{self.model_url}/metadata")

    def predict(self, inputs: dict, signature: str = SERVING_SIGNATURE) -> dict | list:
        """A raw predict call in TF Serving's columnar format.

        ``inputs`` maps input names to JSON-ready values (lists, or {"b64": str}
        items for string inputs). Returns the answer's "outputs" (a list for one
        output, else a dict by output name).
        """
        answer = self._request(
            f"{self.model_url}:predict", {"signature_name": signature, "inputs": inputs}
        )
        if "outputs" not in answer:
            raise ServingError(f"{self.model_url}:predict answered without 'outputs'.")
        return answer["outputs"]

    # -- KPAC calls --------------------------------------------------------------------

    def deblur_encoded(self, images: bytes | Sequence[bytes], *, right=None, centre=None,
                       signature: str = ENCODED_SIGNATURE) -> list[bytes]:
        """Deblur image files: PNG (8/16-bit) or JPEG bytes in, PNG bytes out.

        Args:
            images: one file's bytes or a list of them (dual-pixel models: the left
                views, with ``right`` and ``centre`` lists of the same length).
        Returns:
            One PNG file (bytes) per input, with the input's (centre's) bit depth.
        """
        dual = right is not None or centre is not None
        if dual and (right is None or centre is None):
            raise ValueError("A dual-pixel call needs left (images), right and centre views.")
        groups = [_as_bytes_list(images, "images")]
        if dual:
            groups += [_as_bytes_list(right, "right"), _as_bytes_list(centre, "centre")]
            if len({len(group) for group in groups}) != 1:
                raise ValueError("left, right and centre must list the same number of images.")
        inputs = {
            name: [{"b64": base64.b64encode(item).decode("ascii")} for item in group]
            for name, group in zip(_byte_names(dual), groups)
        }
        outputs = self.predict(inputs, signature)
        if isinstance(outputs, dict):
            outputs = outputs.get("png_bytes", outputs)
        try:
            return [base64.b64decode(item["b64"]) for item in outputs]
        except (TypeError, KeyError, ValueError) as error:
            raise ServingError(
                "The server's answer holds no base64 PNG files; is this a model exported "
                "by kpac-export?"
            ) from error

    def deblur(self, images: np.ndarray, *, right: np.ndarray | None = None,
               centre: np.ndarray | None = None,
               signature: str = SERVING_SIGNATURE) -> np.ndarray:
        """Deblur float images: NHWC (or one HWC) float32 in [0,1] -> same shape,
        clipped to [0,1]. Sent as JSON numbers; prefer :meth:`deblur_encoded` for
        large images."""
        dual = right is not None or centre is not None
        arrays = [images] + ([right, centre] if dual else [])
        if dual and any(array is None for array in arrays):
            raise ValueError("A dual-pixel call needs left (images), right and centre views.")
        arrays = [np.asarray(array, dtype=np.float32) for array in arrays]
        single = arrays[0].ndim == 3
        arrays = [array[None] if array.ndim == 3 else array for array in arrays]
        names = _VIEWS if dual else ("images",)
        outputs = self.predict({n: a.tolist() for n, a in zip(names, arrays)}, signature)
        if isinstance(outputs, dict):
            outputs = outputs["deblurred"]
        result = np.asarray(outputs, dtype=np.float32)
        return result[0] if single else result


_GENERIC_ERROR_LINES = ("Graph execution error", "Detected at node", "<stack traces unavailable>")


def _first_line(text: str) -> str:
    """The line of a server error that says what went wrong.

    TF's op errors start with generic lines ("Graph execution error:", "Detected at
    node ...") before the op's own message; an assertion's text is preferred.
    """
    lines = [line.strip() for line in str(text).splitlines() if line.strip()]
    for line in lines:
        if "assertion failed" in line:
            return line
    specific = [line for line in lines if not line.startswith(_GENERIC_ERROR_LINES)]
    return (specific or lines or ["(no detail)"])[0]


class GrpcClient:
    """Client of TF Serving's gRPC PredictionService (needs tensorflow-serving-api).

    Args:
        target: "host:port" of the gRPC endpoint (default port 8500).
        model_name, version, timeout: as for :class:`RestClient`.
    """

    def __init__(self, target: str = "localhost:8500", model_name: str = "kpac",
                 version: int | None = None, timeout: float = 120.0):
        try:
            import grpc
            from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc
        except ImportError as error:
            raise ImportError(
                "GrpcClient needs the tensorflow-serving-api package (pip install "
                "tensorflow-serving-api); RestClient works without it."
            ) from error
        self._grpc = grpc
        self._predict_pb2 = predict_pb2
        self._channel = grpc.insecure_channel(
            target, options=[("grpc.max_receive_message_length", 1 << 30),
                             ("grpc.max_send_message_length", 1 << 30)],
        )
        self._stub = prediction_service_pb2_grpc.PredictionServiceStub(self._channel)
        self.target, self.model_name, self.version, self.timeout = target, model_name, version, timeout

    def _predict(self, inputs: dict, signature: str) -> dict:
        import tensorflow as tf

        request = self._predict_pb2.PredictRequest()
        request.model_spec.name = self.model_name
        request.model_spec.signature_name = signature
        if self.version is not None:
            request.model_spec.version.value = int(self.version)
        for name, value in inputs.items():
            request.inputs[name].CopyFrom(tf.make_tensor_proto(value))
        try:
            response = self._stub.Predict(request, timeout=self.timeout)
        except self._grpc.RpcError as error:
            raise ServingError(
                f"TF Serving at {self.target} answered {error.code().name}: "
                f"{_first_line(error.details() or '')}", status=error.code().name,
            ) from error
        return {key: tf.make_ndarray(proto) for key, proto in response.outputs.items()}

    def deblur_encoded(self, images: bytes | Sequence[bytes], *, right=None, centre=None,
                       signature: str = ENCODED_SIGNATURE) -> list[bytes]:
        """As :meth:`RestClient.deblur_encoded` (raw bytes travel without base64)."""
        dual = right is not None or centre is not None
        groups = [_as_bytes_list(images, "images")]
        if dual:
            groups += [_as_bytes_list(right, "right"), _as_bytes_list(centre, "centre")]
        inputs = {
            name: np.array(group, dtype=object) for name, group in zip(_byte_names(dual), groups)
        }
        return [bytes(item) for item in self._predict(inputs, signature)["png_bytes"]]

    def deblur(self, images: np.ndarray, *, right=None, centre=None,
               signature: str = SERVING_SIGNATURE) -> np.ndarray:
        """As :meth:`RestClient.deblur`."""
        dual = right is not None or centre is not None
        arrays = [np.asarray(a, dtype=np.float32) for a in [images] + ([right, centre] if dual else [])]
        single = arrays[0].ndim == 3
        arrays = [a[None] if a.ndim == 3 else a for a in arrays]
        names = _VIEWS if dual else ("images",)
        result = self._predict(dict(zip(names, arrays)), signature)["deblurred"]
        return result[0] if single else result

    def close(self) -> None:
        self._channel.close()
