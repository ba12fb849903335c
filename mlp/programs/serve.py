"""A local web page: draw a digit and watch the network; explore the tape of an expression.

    python -m mlp.serve [DIR/model.npz] [--port 8000] [--host 127.0.0.1]

It listens on 127.0.0.1 only, unless --host says otherwise. With no checkpoint it uses the newest
one the training program wrote (runs/*/model.npz), or trains the default model first.
JSON endpoints: POST /api/predict {"image": rows of ink in [0, 1]} and POST /api/tape
{"expression": "x2*cos(x1) + exp(x2)", "values": {"x1": "pi", "x2": 1}}.

A request must say `Content-Type: application/json` (a form or a text/plain post from another
site is refused), and its body is bounded in size and nesting. A thread serves each connection,
with a backlog for bursts, a timeout for clients that stall, and a deadline for the whole of a
request (a client sending a byte now and then is cut off too); at most MAX_CONNECTIONS are served
at once, and one more is answered 503 and closed. Every answer is JSON with a
status, an error of the server's own a 500; a client gone before its answer is logged in one
line. Infinite and NaN numbers in an answer are sent as the strings "Infinity", "-Infinity" and
"NaN", so the answer stays JSON.
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
import traceback
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np

import tape

from .. import checkpoint
from ..drawing import mnist_style
from ..expression import ExpressionError, evaluate
from ..nn import MLP
from . import cli, finish

WEB = Path(__file__).with_name("web")
STATIC = {"/": "index.html", "/app.js": "app.js", "/style.css": "style.css"}
CONTENT_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript", ".css": "text/css"}
MAX_BODY = 1 << 20  # bytes
MAX_NESTING = 8  # arrays and objects in one another; an image is 3 deep
MAX_SIDE = 1000  # pixels of a drawing, each way
TIMEOUT = 10.0  # seconds a client may keep a connection waiting
DEADLINE = 30.0  # seconds a request may take to arrive, headers and body
BACKLOG = 128  # connections waiting to be accepted (Python's default is 5)
MAX_CONNECTIONS = 64  # served at once (two threads each: its own and its deadline's); more get a 503
JSON_STRING, BRACKET = re.compile(r'"(?:[^"\\]|\\.)*"'), re.compile(r"[][{}]")
CONTENT_LENGTH = re.compile(r"[0-9]{1,15}")  # ASCII digits only (str.isdigit takes others)
DROPPED = (BrokenPipeError, ConnectionResetError, ConnectionAbortedError, TimeoutError)


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

    def handle_one_request(self) -> None:
        """One request, within the server's deadline: past it, the connection is shut (after a
        408 answer if the request's headers had come)."""
        self.command, self.expired, self.answering = None, False, threading.Lock()
        deadline = threading.Timer(self.server.deadline, self._expire)
        deadline.start()
        try:
            super().handle_one_request()
        finally:
            deadline.cancel()

    def _expire(self) -> None:
        with self.answering:
            self.expired = self.close_connection = True
            try:
                if self.command:
                    self.connection.sendall(self._response(HTTPStatus.REQUEST_TIMEOUT, _json(
                        {"error": f"the request took more than {self.server.deadline:g} s to arrive"}), "application/json"))
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass  # the client has gone already

    def do_GET(self) -> None:
        self.answer(lambda: self._page(self.path))

    def do_POST(self) -> None:
        routes = {"/api/predict": self.server.page.predict, "/api/tape": self.server.page.record}
        if self.path not in routes:
            self.close_connection = True  # the body is not read
            return self.send_json(HTTPStatus.NOT_FOUND, {"error": f"no endpoint {self.path}; try {', '.join(routes)}"})
        self.answer(lambda: routes[self.path](self.read_json()))

    def answer(self, respond) -> None:
        """Send what `respond()` gives (a JSON object, or a page's (body, type)): a refusal as its
        status and message, any other failure as a 500, its traceback logged."""
        try:
            result = respond()
        except RequestError as error:
            return self.send_json(error.status, {"error": error.message, **error.extra})
        except DROPPED:
            raise
        except Exception as error:  # a bug of ours: the client still gets an answer
            traceback.print_exc()
            self.close_connection = True
            return self.send_json(HTTPStatus.INTERNAL_SERVER_ERROR,
                                  {"error": f"the server failed on this request ({type(error).__name__}); it is logged"})
        if isinstance(result, dict):
            return self.send_json(HTTPStatus.OK, result)
        self.send(HTTPStatus.OK, *result)

    @staticmethod
    def _page(path: str) -> tuple[bytes, str]:
        name = STATIC.get(path.split("?")[0])
        if name is None:
            raise RequestError(HTTPStatus.NOT_FOUND, f"no page {path}")
        return (WEB / name).read_bytes(), CONTENT_TYPES[Path(name).suffix]

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """The base class's errors (a malformed request line, an unknown method, ...) as JSON."""
        self.close_connection = True
        self.send_json(HTTPStatus(code), {"error": message or HTTPStatus(code).phrase})

    def read_json(self) -> dict:
        media_type = self.headers.get("Content-Type", "").split(";")[0].strip().lower()
        if media_type != "application/json":
            self.close_connection = True  # the body is not read
            raise RequestError(HTTPStatus.UNSUPPORTED_MEDIA_TYPE,
                               f"the body must be JSON, sent with Content-Type: application/json (got {media_type or 'none'!r})")
        length = self.headers.get("Content-Length")
        if length is None:
            raise RequestError(HTTPStatus.LENGTH_REQUIRED, "a Content-Length header is required")
        if not CONTENT_LENGTH.fullmatch(length):
            self.close_connection = True  # the body is not read
            raise RequestError(HTTPStatus.BAD_REQUEST, f"Content-Length must be a number of bytes in ASCII digits, got {length!r}")
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
        self.send(status, _json(payload), "application/json")

    def send(self, status: HTTPStatus, body: bytes, content_type: str) -> None:
        """Answer, unless the deadline has (then the 408 was the answer)."""
        with self.answering:
            if self.expired:
                return
            self.log_request(status.value, len(body))
            self.wfile.write(self._response(status, body, content_type))

    def _response(self, status: HTTPStatus, body: bytes, content_type: str) -> bytes:
        """The whole answer, status line, headers and body, to be written at once."""
        headers = {"Server": self.version_string(), "Date": self.date_time_string(), "Content-Type": content_type,
                   "Content-Length": len(body), "Cache-Control": "no-store"}
        if self.close_connection:
            headers["Connection"] = "close"
        lines = [f"{self.protocol_version} {status.value} {status.phrase}", *(f"{k}: {v}" for k, v in headers.items())]
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - the base class's name
        sys.stderr.write(f"{self.address_string()} {format % args}\n")


def _json(payload: dict) -> bytes:
    return json.dumps(finite(payload), allow_nan=False).encode()


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

    def __init__(self, address: tuple[str, int], page: Page, deadline: float = DEADLINE,
                 max_connections: int = MAX_CONNECTIONS):
        self.address_family = socket.getaddrinfo(*address, type=socket.SOCK_STREAM)[0][0]
        self.page, self.deadline, self.max_connections = page, deadline, max_connections
        self.slots = threading.BoundedSemaphore(max_connections)
        super().__init__(address, Handler)

    def process_request(self, request, client_address) -> None:
        """Serve the connection in a thread of its own if one of the slots is free; else answer 503 and close it."""
        if not self.slots.acquire(blocking=False):
            body = _json({"error": f"the server is busy: it serves {self.max_connections} connections at once; try again"})
            try:
                request.settimeout(1.0)
                request.sendall(f"HTTP/1.0 503 Service Unavailable\r\nContent-Type: application/json\r\n"
                                f"Content-Length: {len(body)}\r\nRetry-After: 1\r\nConnection: close\r\n\r\n".encode() + body)
            except OSError:
                pass  # the client has gone already
            sys.stderr.write(f"{client_address[0]} refused: {self.max_connections} connections are being served\n")
            return self.shutdown_request(request)
        try:
            super().process_request(request, client_address)
        except BaseException:
            self.slots.release()
            raise

    def process_request_thread(self, request, client_address) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.slots.release()

    def handle_error(self, request, client_address) -> None:
        """A client gone before its answer is one line of the log; anything else, a traceback."""
        error = sys.exc_info()[1]
        if isinstance(error, DROPPED):
            sys.stderr.write(f"{client_address[0]} went away before its answer ({type(error).__name__})\n")
        else:
            super().handle_error(request, client_address)


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
    from ..data import CLASSES, DIGIT_CLASSES

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
    finish(main())
