"""A loopback stand-in for TF Serving's REST API, for tests only.

It serves the SavedModel versions found in ``<export_dir>/<model_name>/<int>/`` (like
TF Serving's model base path) on 127.0.0.1 at an ephemeral port, loaded in-process
with tf.saved_model.load, and answers the subset of the REST API the client uses:

- GET  /v1/models/<name>[/versions/<v>]            model status
- GET  /v1/models/<name>[/versions/<v>]/metadata   signature names, inputs, outputs
- POST /v1/models/<name>[/versions/<v>]:predict    columnar ("inputs") requests, the
  format the client sends; string inputs as {"b64": ...}; outputs named *_bytes are
  returned as {"b64": ...}, as TF Serving does; errors as {"error": message} with
  HTTP 400 (bad request / graph assertion) or 404 (unknown model or version).
"""
from __future__ import annotations

import base64
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import tensorflow as tf

_PATH = re.compile(r"^/v1/models/([^/:]+)(?:/versions/(\d+))?(/metadata|:predict)?$")


class ServingStub:
    """Context manager: ``with ServingStub(export_dir, "kpac") as stub: stub.url``."""

    def __init__(self, export_dir, model_name: str):
        self.model_name = model_name
        base = Path(export_dir) / model_name
        self.models = {
            int(entry.name): tf.saved_model.load(str(entry))
            for entry in sorted(base.iterdir())
            if entry.name.isdigit() and entry.is_dir()
        }
        if not self.models:
            raise FileNotFoundError(f"{base}: no version folders to serve.")
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> "ServingStub":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)

    # -- request handling ---------------------------------------------------------------

    def _find(self, name: str, version: str | None):
        if name != self.model_name:
            return None, f"Servable not found for request: Latest({name})"
        number = max(self.models) if version is None else int(version)
        if number not in self.models:
            return None, f"Servable not found for request: Specific({name}, {version})"
        return number, None

    def _status(self, number: int) -> dict:
        return {"model_version_status": [{
            "version": str(number), "state": "AVAILABLE",
            "status": {"error_code": "OK", "error_message": ""},
        }]}

    def _metadata(self, number: int) -> dict:
        """GetModelMetadataResponse as TF Serving renders it in JSON."""

        def spec(key: str, s: tf.TensorSpec) -> dict:
            return {
                "dtype": f"DT_{s.dtype.name.upper()}",
                "tensor_shape": {
                    "dim": [{"size": str(-1 if d is None else d), "name": ""} for d in s.shape],
                    "unknown_rank": False,
                },
                "name": f"{key}:0",
            }

        signatures = {}
        for key, function in self.models[number].signatures.items():
            signatures[key] = {
                "inputs": {k: spec(k, s) for k, s in function.structured_input_signature[1].items()},
                "outputs": {k: spec(k, s) for k, s in function.structured_outputs.items()},
                "method_name": "tensorflow/serving/predict",
            }
        return {"model_spec": {"name": self.model_name, "version": str(number), "signature_name": ""},
                "metadata": {"signature_def": {"signature_def": signatures}}}

    def _predict(self, number: int, body: dict) -> dict:
        signature_name = body.get("signature_name", "serving_default")
        signatures = self.models[number].signatures
        if signature_name not in signatures:
            raise _BadRequest(f'Serving signature name: "{signature_name}" not found in signature def')
        function = signatures[signature_name]
        specs = function.structured_input_signature[1]
        if "inputs" not in body:
            raise _BadRequest("Missing 'inputs' key (this stand-in answers the columnar format only)")
        columns = body["inputs"]
        if not isinstance(columns, dict):
            columns = {next(iter(specs)): columns}
        if set(columns) != set(specs):
            raise _BadRequest(
                f"input size does not match signature: expected {sorted(specs)}, got {sorted(columns)}")
        feeds = {key: _to_tensor(value, specs[key].dtype) for key, value in columns.items()}
        outputs = {key: value.numpy() for key, value in function(**feeds).items()}
        encoded = {key: _to_json(key, value) for key, value in outputs.items()}
        return {"outputs": next(iter(encoded.values())) if len(encoded) == 1 else encoded}

    def _handler_class(self):
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output quiet
                pass

            def _reply(self, code: int, payload: dict) -> None:
                data = json.dumps(payload).encode("utf-8")
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _route(self, method: str):
                match = _PATH.match(self.path)
                if not match:
                    return self._reply(404, {"error": f"Malformed request: {method} {self.path}"})
                name, version, action = match.groups()
                number, error = stub._find(name, version)
                if error:
                    return self._reply(404, {"error": error})
                if method == "GET" and action is None:
                    return self._reply(200, stub._status(number))
                if method == "GET" and action == "/metadata":
                    return self._reply(200, stub._metadata(number))
                if method == "POST" and action == ":predict":
                    try:
                        length = int(self.headers.get("Content-Length", 0))
                        body = json.loads(self.rfile.read(length) or b"{}")
                        return self._reply(200, stub._predict(number, body))
                    except (_BadRequest, ValueError, TypeError, KeyError) as error:
                        return self._reply(400, {"error": str(error)})
                    except tf.errors.OpError as error:
                        return self._reply(400, {"error": error.message})
                return self._reply(404, {"error": f"Malformed request: {method} {self.path}"})

            def do_GET(self):  # noqa: N802
                self._route("GET")

            def do_POST(self):  # noqa: N802
                self._route("POST")

        return Handler


class _BadRequest(ValueError):
    pass


def _to_tensor(value, dtype: tf.DType) -> tf.Tensor:
    if dtype == tf.string:
        def decode(item):
            if isinstance(item, dict) and set(item) == {"b64"}:
                return base64.b64decode(item["b64"])
            if isinstance(item, list):
                return [decode(x) for x in item]
            return item.encode("utf-8") if isinstance(item, str) else item

        return tf.constant(decode(value), dtype=tf.string)
    return tf.constant(np.asarray(value, dtype=dtype.as_numpy_dtype))


def _to_json(key: str, value: np.ndarray):
    if key.endswith("_bytes"):
        def encode(item):
            if isinstance(item, np.ndarray):
                return [encode(x) for x in item]
            return {"b64": base64.b64encode(item).decode("ascii")}

        return encode(value)
    return value.tolist()
