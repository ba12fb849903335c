"""A local web page: draw a digit and watch the network; explore the tape of an expression.

    python -m mlp.serve [DIR/model.npz] [--port 8000] [--host 127.0.0.1]

It listens on 127.0.0.1 only, unless --host says otherwise. With no checkpoint it uses the newest
one the training program wrote (runs/*/model.npz), or trains the default model first.
JSON endpoints: POST /api/predict {"image": rows of ink in [0, 1]} and POST /api/tape
{"expression": "x2*cos(x1) + exp(x2)", "values": {"x1": "pi", "x2": 1}}.

A request must say `Content-Type: application/json` (a form or a text/plain post from another
site is refused), and its body is bounded in size and nesting. A thread serves each connection,
with a backlog for bursts and a timeout for clients that stall. Infinite and NaN numbers in an
answer are sent as the strings "Infinity", "-Infinity" and "NaN", so the answer stays JSON.
"""
from __future__ import annotations

import argparse
import errno
import json
import math
import re
import socket
import sys
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np

import tape

from . import checkpoint, cli
from .drawing import mnist_style
from .expression import ExpressionError, evaluate
from .nn import MLP

WEB = Path(__file__).with_name("web")
STATIC = {"/": "index.html", "/app.js": "app.js", "/style.css": "style.css"}
CONTENT_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript", ".css": "text/css"}
MAX_BODY = 1 << 20  # bytes
MAX_NESTING = 8  # arrays and objects in one another; an image is 3 deep
MAX_SIDE = 1000  # pixels of a drawing, each way
TIMEOUT = 10.0  # seconds a client may keep a connection waiting
BACKLOG = 128  # connections waiting to be accepted (Python's default is 5)
JSON_STRING, BRACKET = re.compile(r'"(?:[^"\\]|\\.)*"'), re.compile(r"[][{}]")


class RequestError(Exception):
    """A refused request: its HTTP status and a message for the user."""

    def __init__(self, status: HTTPStatus, message: str, **extra):
        super().__init__(message)
        self.status, self.message, self.extra = status, message, extra


class Page:
    """What the endpoints answer with: the model's predictions and the tapes of expressions."""

    def __init__(self, model: MLP, classes: list[str]):
        self.model, self.classes = model, classes
        self.lock = threading.Lock()  # one tape, one request at a time

    def predict(self, request: dict) -> dict:
        if "image" in request:
            image = _image(request["image"])
            pixels = mnist_style(image)
        elif "pixels" in request:
            pixels = _image(request["pixels"])
            if pixels.shape != (28, 28):
                raise RequestError(HTTPStatus.BAD_REQUEST, f"pixels must be 28x28, got {pixels.shape[0]}x{pixels.shape[1]}")
            if pixels.min() < 0 or pixels.max() > 1:
                raise RequestError(HTTPStatus.BAD_REQUEST, f"pixels must be ink values in [0, 1], got {pixels.min():g} to {pixels.max():g}")
        else:
            raise RequestError(HTTPStatus.BAD_REQUEST, "expected {\"image\": [[...], ...]} (or 28x28 \"pixels\")")
        with self.lock:
            *hidden, logits = self.model.activations(pixels.reshape(1, -1))
            probabilities = self.model.predict_proba(pixels.reshape(1, -1))[0]
        best = int(probabilities.argmax())
        return {
            "pixels": np.round(pixels, 3).tolist(),
            "probabilities": np.round(probabilities, 5).tolist(),
            "prediction": best,
            "label": self.classes[best],
            "classes": self.classes,
            "hidden": [np.round(h[0], 4).tolist() for h in hidden],
            "logits": np.round(logits[0], 4).tolist(),
        }

    def record(self, request: dict) -> dict:
        text, values = request.get("expression"), request.get("values", {})
        if not isinstance(text, str) or not isinstance(values, dict):
            raise RequestError(HTTPStatus.BAD_REQUEST, "expected {\"expression\": \"...\", \"values\": {\"x1\": number, ...}}")
        with self.lock, tape.Tape() as t:
            try:
                y, leaves = evaluate(text, values)
            except ExpressionError as error:
                raise RequestError(HTTPStatus.BAD_REQUEST, str(error), position=error.position) from None
            if not isinstance(y, tape.Var):
                raise RequestError(HTTPStatus.BAD_REQUEST, f"{text!r} does not depend on any variable: its value is {y!r}")
            y.backward()
            names = {v.node: name for name, v in leaves.items()}
            nodes = [
                {"node": i, "name": names.get(i, f"v{i}"), "op": op, "parents": [names.get(p, f"v{p}") for p in parents],
                 "partials": partials, "adjoint": float(t.adjoint[i]) if i < len(t.adjoint) else 0.0}
                for i, op, parents, partials in t.nodes()
            ]
            return {"value": y.value, "output": names.get(y.node, f"v{y.node}"), "nodes": nodes,
                    "gradient": {name: v.grad for name, v in leaves.items()}}


def _image(rows) -> np.ndarray:
    try:
        image = np.asarray(rows, dtype=np.float64)
    except (TypeError, ValueError):
        raise RequestError(HTTPStatus.BAD_REQUEST, "the image must be rows of numbers of equal length") from None
    if image.ndim != 2 or not 1 <= min(image.shape) <= max(image.shape) <= MAX_SIDE:
        raise RequestError(HTTPStatus.BAD_REQUEST, f"the image must be 2-d, at most {MAX_SIDE} pixels each way; got shape {image.shape}")
    if not np.all(np.isfinite(image)):
        raise RequestError(HTTPStatus.BAD_REQUEST, "the image holds a value that is not a finite number")
    return image


class Handler(BaseHTTPRequestHandler):
    """Static files, and the JSON endpoints answered by `self.server.page`."""

    server_version = "wengert"
    timeout = TIMEOUT  # on each read and write of the connection

    def do_GET(self) -> None:
        name = STATIC.get(self.path.split("?")[0])
        if name is None:
            return self.send_json(HTTPStatus.NOT_FOUND, {"error": f"no page {self.path}"})
        body = (WEB / name).read_bytes()
        self.send(HTTPStatus.OK, body, CONTENT_TYPES[Path(name).suffix])

    def do_POST(self) -> None:
        routes = {"/api/predict": self.server.page.predict, "/api/tape": self.server.page.record}
        try:
            if self.path not in routes:
                raise RequestError(HTTPStatus.NOT_FOUND, f"no endpoint {self.path}; try {', '.join(routes)}")
            self.send_json(HTTPStatus.OK, routes[self.path](self.read_json()))
        except RequestError as error:
            self.send_json(error.status, {"error": error.message, **error.extra})

    def read_json(self) -> dict:
        media_type = self.headers.get("Content-Type", "").split(";")[0].strip().lower()
        if media_type != "application/json":
            self.close_connection = True  # the body is not read
            raise RequestError(HTTPStatus.UNSUPPORTED_MEDIA_TYPE,
                               f"the body must be JSON, sent with Content-Type: application/json (got {media_type or 'none'!r})")
        length = self.headers.get("Content-Length")
        if length is None or not length.isdigit():
            raise RequestError(HTTPStatus.LENGTH_REQUIRED, "a Content-Length header is required")
        if int(length) > MAX_BODY:
            self.close_connection = True  # the body is not read
            raise RequestError(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f"the body is {int(length):,} bytes; at most {MAX_BODY:,} are accepted")
        try:
            text = self.rfile.read(int(length)).decode()
            if nesting(text) > MAX_NESTING:
                raise RequestError(HTTPStatus.BAD_REQUEST, f"the JSON nests arrays and objects more than {MAX_NESTING} deep")
            request = json.loads(text, parse_constant=_no_constant)
        except (UnicodeDecodeError, ValueError) as error:  # JSONDecodeError, and numbers of over 4,300 digits
            raise RequestError(HTTPStatus.BAD_REQUEST, f"the body is not valid JSON: {error}") from None
        if not isinstance(request, dict):
            raise RequestError(HTTPStatus.BAD_REQUEST, "the body must be a JSON object")
        return request

    def send_json(self, status: HTTPStatus, payload: dict) -> None:
        self.send(status, json.dumps(finite(payload), allow_nan=False).encode(), "application/json")

    def send(self, status: HTTPStatus, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - the base class's name
        sys.stderr.write(f"{self.address_string()} {format % args}\n")


def nesting(text: str) -> int:
    """How deep the arrays and objects of a JSON text nest (counted outside its strings)."""
    depth = deepest = 0
    for char in BRACKET.findall(JSON_STRING.sub("", text)):
        if char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}":
            depth -= 1
    return deepest


def _no_constant(name: str):
    raise ValueError(f"{name} is not a JSON number")


def finite(payload):
    """`payload` with each infinite or NaN float as the string JavaScript writes for it."""
    if isinstance(payload, float) and not math.isfinite(payload):
        return "NaN" if payload != payload else ("Infinity" if payload > 0 else "-Infinity")
    if isinstance(payload, dict):
        return {k: finite(v) for k, v in payload.items()}
    if isinstance(payload, list):
        return [finite(v) for v in payload]
    return payload


class Server(ThreadingHTTPServer):
    """The page's HTTP server: a thread per connection, a backlog for bursts of clients, IPv4
    or IPv6 as the address is."""

    request_queue_size = BACKLOG
    daemon_threads = True

    def __init__(self, address: tuple[str, int], page: Page):
        self.address_family = socket.getaddrinfo(*address, type=socket.SOCK_STREAM)[0][0]
        self.page = page
        super().__init__(address, Handler)


def make_server(page: Page, host: str = "127.0.0.1", port: int = 8000) -> Server:
    """A server for `page` on (host, port), listening; OSError if it cannot listen there."""
    return Server((host, port), page)


def find_model(path: Path | None) -> tuple[checkpoint.Checkpoint, str]:
    """The checkpoint to serve and a sentence saying where it came from."""
    if path is not None:
        return checkpoint.load(path), f"serving {path}"
    if newest := _newest_model():
        return checkpoint.load(newest), f"serving {newest}, the newest model the training program wrote"
    from . import train

    print("no trained model found (runs/*/model.npz): training the default one first", file=sys.stderr)
    if train.main(["--no-plots"]) != 0 or not (newest := _newest_model()):
        raise SystemExit("training failed; train a model with python -m mlp.train and pass its model.npz")
    return checkpoint.load(newest), f"serving {newest}, just trained"


def _newest_model() -> Path | None:
    from .train import RUNS

    candidates = sorted(RUNS.glob("*/model.npz"), key=lambda p: p.stat().st_mtime)
    return candidates[-1] if candidates else None


def port_number(text: str) -> int:
    port = int(text)
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"expected a port number from 0 to 65535, got {text}")
    return port


def main(argv: list[str] | None = None) -> int:
    p = cli.ArgumentParser(prog="python -m mlp.serve", description=__doc__.split("\n\n")[0])
    p.add_argument("checkpoint", type=Path, nargs="?", help="a model.npz (default: the newest under runs/)")
    p.add_argument("--port", type=port_number, default=8000, help="0 picks a free port (default: %(default)s)")
    p.add_argument("--host", default="127.0.0.1", help="the address to listen on; 0.0.0.0 exposes the page to the network")
    args = p.parse_args(argv)
    try:
        saved, origin = find_model(args.checkpoint)
    except (FileNotFoundError, checkpoint.CheckpointError) as error:
        return cli.refuse(error)
    from .data import CLASSES, DIGIT_CLASSES

    classes = list(CLASSES.get(saved.args.get("dataset"), DIGIT_CLASSES))
    try:
        server = make_server(Page(saved.kept, classes), args.host, args.port)
    except OSError as error:  # in use, not an address of this machine, no such host name
        return cli.refuse(f"cannot listen on {args.host} port {args.port}: {error.strerror or error}"
                          f"{' (--port 0 picks a free port)' if error.errno == errno.EADDRINUSE else ''}")
    host, port = server.server_address[:2]
    print(f"{origin}\nopen http://{f'[{host}]' if ':' in host else host}:{port}/  (Ctrl-C stops)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        print("stopped")
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
