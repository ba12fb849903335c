"""The web page's server: the JSON endpoints on a real server on 127.0.0.1, and the drawing's
reduction to an MNIST digit."""
import http.client
import json
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from mlp import checkpoint, serve
from mlp.drawing import mnist_style


def strict_json(body: bytes):
    """JSON as the standard has it: no NaN or Infinity (which Python's json would let pass)."""
    def refuse(name):
        raise ValueError(f"{name} is not JSON")

    return json.loads(body, parse_constant=refuse)


def post(url: str, body, raw: bool = False, content_type: str = "application/json") -> tuple[int, dict]:
    data = body if raw else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": content_type})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, strict_json(response.read())
    except urllib.error.HTTPError as error:
        return error.code, strict_json(error.read())


def still_answering(server: str) -> None:
    status, answer = post(server + "/api/tape", {"expression": "x1 * x1", "values": {"x1": 3}})
    assert status == 200 and answer["gradient"] == {"x1": 6.0}


def test_prediction_of_a_known_test_digit(server, model, digits):
    right = np.flatnonzero(model.predict(digits.x_test) == digits.y_test)
    i = int(right[0])
    status, answer = post(server + "/api/predict", {"pixels": digits.x_test[i].reshape(28, 28).tolist()})
    assert status == 200 and answer["prediction"] == digits.y_test[i]
    assert len(answer["probabilities"]) == 10 and sum(answer["probabilities"]) == pytest.approx(1, abs=1e-3)
    assert len(answer["hidden"]) == 1 and len(answer["hidden"][0]) == 32
    # the same digit drawn bigger and off-centre, as a canvas would send it
    big = np.kron(digits.x_test[i].reshape(28, 28), np.ones((4, 4)))
    canvas = np.zeros((150, 150))
    canvas[5:117, 30:142] = big
    status, answer = post(server + "/api/predict", {"image": canvas.round(2).tolist()})
    assert status == 200 and answer["prediction"] == digits.y_test[i]
    still_answering(server)


def test_a_prediction_is_the_models_numbers(server, model):
    """The twin of the known digit's test, without the digits: a 28x28 image of ink, its answer
    against the layers written in numpy."""
    pixels = np.random.default_rng(5).random((28, 28)) * (np.random.default_rng(6).random((28, 28)) < 0.2)
    status, answer = post(server + "/api/predict", {"pixels": pixels.tolist()})
    state = model.state_dict()
    hidden = np.maximum(pixels.reshape(-1) @ state["layers.0.weight"].T + state["layers.0.bias"], 0)
    logits = hidden @ state["layers.1.weight"].T + state["layers.1.bias"]
    assert status == 200 and answer["prediction"] == int(logits.argmax())
    np.testing.assert_allclose(answer["logits"], logits, atol=1e-3)
    np.testing.assert_allclose(answer["hidden"][0], hidden, atol=1e-3)
    p = np.exp(logits - logits.max())
    np.testing.assert_allclose(answer["probabilities"], p / p.sum(), atol=1e-4)


@pytest.mark.parametrize("content_type", ["application/json; charset=utf-8", "Application/JSON;charset=UTF-8",
                                          "application/json"])
def test_json_with_a_charset_is_json(server, content_type):
    status, answer = post(server + "/api/tape", {"expression": "x1 * x1", "values": {"x1": 3}}, content_type=content_type)
    assert status == 200 and answer["gradient"] == {"x1": 6.0}


def test_connections_past_the_cap_are_refused_with_a_503_and_the_server_goes_on(model):
    httpd = serve.Server(("127.0.0.1", 0), serve.Page(model, [str(d) for d in range(10)]), max_connections=2)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    address, url = httpd.server_address[:2], f"http://127.0.0.1:{httpd.server_address[1]}"
    try:
        held = [socket.create_connection(address, timeout=5) for _ in range(2)]
        for connection in held:  # each holds its slot: a request whose body has not come
            connection.sendall(b"POST /api/tape HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{")
        time.sleep(0.3)  # the server has taken both
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(url + "/", timeout=5)
        assert refused.value.code == 503 and "serves 2 connections at once" in strict_json(refused.value.read())["error"]
        held[0].close()
        time.sleep(0.3)  # its thread ends and gives its slot back
        still_answering(url)
        held[1].close()
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_the_tape_of_the_courses_example(server):
    status, answer = post(server + "/api/tape", {"expression": "x2*cos(x1) + exp(x2)", "values": {"x1": "pi", "x2": 1}})
    assert status == 200 and answer["value"] == pytest.approx(np.e - 1)
    nodes = answer["nodes"]
    assert [n["op"] for n in nodes] == ["leaf", "leaf", "cos", "mul", "exp", "add"]
    assert nodes[3]["parents"] == ["x2", "v2"] and nodes[3]["partials"] == [-1.0, 1.0]
    assert nodes[4]["partials"] == [pytest.approx(np.e)]
    # adjoints by the chain rule: 1 for v2..v5; x2 gets e + cos(pi) = e - 1; x1 gets -sin(pi)
    assert [n["adjoint"] for n in nodes[2:]] == [1.0, 1.0, 1.0, 1.0]
    assert answer["gradient"]["x2"] == pytest.approx(np.e - 1) and answer["gradient"]["x1"] == pytest.approx(0, abs=1e-12)


@pytest.mark.parametrize("expression, words", [
    ("__import__('os')", ["unknown name '__import__'", "character 1"]),
    ("x1.__class__", ["unexpected character '.'", "character 3"]),
    ("open(x1)", ["unknown name 'open'"]),
    ("x1 +", ["ends too soon"]),
    ("sin x1", ["needs its argument in parentheses"]),
    ("x9 * 2", ["x9 has no value"]),
    ("log(x1 - 3)", ["log(-2.0): math domain error"]),
    ("(" * 60 + "x1" + ")" * 60, ["nested"]),
    ("x1 + " * 200, ["longer than 500 characters"]),
    ("2 + 3", ["does not depend on any variable"]),
])
def test_refused_expressions_point_at_the_problem(server, expression, words):
    status, answer = post(server + "/api/tape", {"expression": expression, "values": {"x1": 1, "x2": 2}})
    assert status == 400
    for word in words:
        assert word in answer["error"]
    still_answering(server)


def test_infinite_partials_and_gradients_are_sent_as_valid_json(server):
    status, answer = post(server + "/api/tape", {"expression": "sqrt(x1) - sqrt(x1)", "values": {"x1": 0}})
    assert status == 200 and answer["value"] == 0.0
    assert answer["nodes"][1]["partials"] == ["Infinity"] and answer["nodes"][1]["adjoint"] == 1.0
    assert answer["gradient"] == {"x1": "NaN"}  # inf - inf


@pytest.mark.parametrize("expression, values, words", [
    ("x1 + 0**-1", {"x1": 1}, ["0 ** (-1): 0.0 cannot be raised to a negative power", "character 7"]),
    ("x1", {"x1": "(-8)**0.5"}, ["(-8) ** 0.5 is not a real number"]),
    ("x1", {"x1": 10**400}, ["x1 is too large for a float"]),
    ("x1 + 10**400", {"x1": 1}, ["10 ** 400 is too large for a float"]),
    ("x1 * 9**9**9**9", {"x1": 1}, ["9 ** 3.8742e+08 is too large for a float"]),
    ("x1 * 1e308 * 10", {"x1": 1}, ["1e+308 * 10 gives inf: too large for a float"]),
    ("x1 + 1e999", {"x1": 1}, ["1e999 gives inf"]),
    ("x1 / (x1 - 1)", {"x1": 1}, ["division by zero"]),
    ("exp(x1)", {"x1": 1000}, ["exp(1000.0): math range error"]),
    ("x1", {"x" + "9" * 5000: 1}, ["x1 has no value"]),
    ("x1", {f"x{i}": 1 for i in range(1, 200)}, ["199 variables; at most 100"]),
])
def test_every_numeric_failure_is_a_400_with_the_reason(server, expression, values, words):
    status, answer = post(server + "/api/tape", {"expression": expression, "values": values})
    assert status == 400
    for word in words:
        assert word in answer["error"]
    still_answering(server)


@pytest.mark.parametrize("body, status, words", [
    (b"[" * 100_000 + b"]" * 100_000, 400, ["more than 8 deep"]),
    (b'{"expression": "x1", "values": {"x1": NaN}}', 400, ["NaN is not a JSON number"]),
    (b'{"expression": "x1", "values": {"x1": -Infinity}}', 400, ["-Infinity is not a JSON number"]),
    (b'{"expression": "x1", "values": {"x1": ' + b"9" * 5000 + b"}}", 400, ["not valid JSON", "4300"]),
    (b'{"expression": "x1", "values": {"x1": "[[[[[[[[[[1"}}', 400, ["unexpected character '['"]),
    (b"{not json", 400, ["not valid JSON"]),
    (b"[1, 2]", 400, ["must be a JSON object"]),
    (json.dumps({"pixels": [[0.0] * 27] * 28}).encode(), 400, ["pixels must be 28x28, got 28x27"]),
    (json.dumps({"pixels": [[1e308] * 28] * 28}).encode(), 400, ["pixels must be ink values in [0, 1], got 1e+308"]),
    (json.dumps({"image": [[0.0, 1.0], [0.5]]}).encode(), 400, ["rows of numbers of equal length"]),
    (json.dumps({"image": [["ink", "none"], ["none", "ink"]]}).encode(), 400, ["rows of numbers of equal length"]),
    (json.dumps({"pixels": [["0.5"] * 28] * 27 + [["x"] * 28]}).encode(), 400, ["rows of numbers of equal length"]),
    (json.dumps({"image": [[0.0] * 2000]}).encode(), 400, ["at most 1000 pixels each way"]),
    (json.dumps({"picture": []}).encode(), 400, ["expected {\"image\""]),
    (json.dumps({"expression": 3}).encode(), 400, ["expected {\"expression\""]),
])
def test_malformed_requests_are_refused_with_a_message(server, body, status, words):
    endpoint = "/api/tape" if b"expression" in body else "/api/predict"
    code, answer = post(server + endpoint, body, raw=True)
    assert code == status
    for word in words:
        assert word in answer["error"]
    still_answering(server)


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", ""])
def test_only_json_is_accepted(server, content_type):
    """A page on another site can post text/plain or a form here without asking; not JSON."""
    status, answer = post(server + "/api/tape", {"expression": "x1", "values": {"x1": 1}}, content_type=content_type)
    assert status == 415 and "Content-Type: application/json" in answer["error"]
    still_answering(server)


def test_fifty_clients_at_once_are_all_answered(server):
    """A burst on loopback: 50 clients, 6 requests each, all at once; no connection is reset."""
    clients, each, start = 50, 6, threading.Barrier(50)
    answers, failures = [], []

    def client(k):
        start.wait()
        for i in range(each):
            try:
                answers.append(post(server + "/api/tape", {"expression": "x1 * x2", "values": {"x1": k, "x2": i}}))
            except OSError as error:  # reset, refused, timed out
                failures.append(repr(error))

    threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert failures == [] and len(answers) == clients * each
    assert all(status == 200 for status, _ in answers)


def test_a_client_that_stalls_is_disconnected_and_holds_nobody_up(model, monkeypatch):
    assert 0 < serve.Handler.timeout <= 30  # seconds; the test waits less
    monkeypatch.setattr(serve.Handler, "timeout", 0.5)
    httpd = serve.make_server(serve.Page(model, [str(d) for d in range(10)]), "127.0.0.1", 0)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        stalled = socket.create_connection(httpd.server_address[:2], timeout=5)
        stalled.sendall(b"POST /api/tape HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{")
        still_answering(f"http://127.0.0.1:{httpd.server_address[1]}")
        began = time.monotonic()
        assert stalled.recv(100) == b""  # closed by the server, not by our own 5 s timeout
        assert time.monotonic() - began < 4
        stalled.close()
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_ipv6_loopback(model):
    httpd = serve.make_server(serve.Page(model, [str(d) for d in range(10)]), "::1", 0)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        still_answering(f"http://[::1]:{httpd.server_address[1]}")
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_an_oversized_body_is_refused_unread(server):
    host, port = server.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=10)
    connection.putrequest("POST", "/api/predict")
    connection.putheader("Content-Type", "application/json")
    connection.putheader("Content-Length", str(serve.MAX_BODY + 1))
    connection.endheaders()  # the server answers without waiting for (or reading) the body
    response = connection.getresponse()
    assert response.status == 413 and "at most 1,048,576" in json.loads(response.read())["error"]
    connection.close()
    still_answering(server)


def test_pages_and_unknown_paths(server):
    with urllib.request.urlopen(server + "/", timeout=10) as response:
        page = response.read().decode()
    assert "Draw a digit" in page and "Explore a tape" in page and "http" not in page.replace("http-equiv", "")
    for path in ("/app.js", "/style.css"):
        with urllib.request.urlopen(server + path, timeout=10) as response:
            assert response.status == 200
    assert post(server + "/api/nothing", {})[0] == 404
    with pytest.raises(urllib.error.HTTPError) as error:
        urllib.request.urlopen(server + "/../setup.cfg", timeout=10)
    assert error.value.code == 404


def test_the_server_listens_on_localhost_unless_told_otherwise(model, tmp_path, monkeypatch, capsys):
    started = {}

    def fake_make_server(page, host, port):
        started.update(host=host, port=port)
        raise KeyboardInterrupt  # stop before serving

    path = tmp_path / "model.npz"
    checkpoint.save(path, checkpoint.Checkpoint(model, 1, "adam", {}, {}, None, {"dataset": "mnist-5k"}))
    monkeypatch.setattr(serve, "make_server", fake_make_server)
    with pytest.raises(KeyboardInterrupt):
        serve.main([str(path), "--port", "0"])
    assert started == {"host": "127.0.0.1", "port": 0}
    assert serve.main([str(tmp_path / "missing.npz")]) == 2


@pytest.fixture
def model_file(model, tmp_path):
    path = tmp_path / "model.npz"
    checkpoint.save(path, checkpoint.Checkpoint(model, 1, "adam", {}, {}, None, {"dataset": "mnist-5k"}))
    return path


def test_a_port_in_use_or_a_bad_address_is_refused_in_one_line(model_file, capsys):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert serve.main([str(model_file), "--port", str(port)]) == 2
    err = capsys.readouterr().err
    assert err == f"error: cannot listen on 127.0.0.1 port {port}: Address already in use (--port 0 picks a free port)\n"
    assert serve.main([str(model_file), "--host", "no-such-host.invalid", "--port", "0"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: cannot listen on no-such-host.invalid port 0: ") and err.count("\n") == 1
    for port in ("70000", "65536", "-1"):
        with pytest.raises(SystemExit) as exit_info:
            serve.main([str(model_file), "--port", port])
        assert exit_info.value.code == 2
        assert capsys.readouterr().err == ("python -m mlp.serve: error: argument --port: expected a port number "
                                           f"from 0 to 65535, got {port} (see --help)\n")
    assert serve.port_number("65535") == 65535 and serve.port_number("0") == 0


def test_a_drawing_becomes_an_mnist_digit():
    """The stroke's bounding box fitted into 20x20, its centre of mass at the field's centre."""
    drawing = np.zeros((300, 200))
    drawing[40:280, 20:60] = 1.0  # a tall bar near the left edge
    digit = mnist_style(drawing)
    assert digit.shape == (28, 28) and digit.max() <= 1.0
    rows, cols = np.nonzero(digit > 0.1)
    assert rows.max() - rows.min() + 1 == 20  # the longer side is 20 pixels
    r, c = np.indices(digit.shape)
    assert (r * digit).sum() / digit.sum() == pytest.approx(13.5, abs=0.6)
    assert (c * digit).sum() / digit.sum() == pytest.approx(13.5, abs=0.6)
    assert not mnist_style(np.zeros((50, 50))).any()


# -- every request answered, within a deadline for the whole request -------------------------------

@pytest.fixture(scope="module")
def strict_server(model):
    """A server whose deadline for a whole request is half a second (the default is 30 s)."""
    httpd = serve.Server(("127.0.0.1", 0), serve.Page(model, [str(d) for d in range(10)]), deadline=0.5)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()


def exchange(address, pieces, pause: float = 0.0, wait: float = 5.0) -> tuple[bytes, float]:
    """Send `pieces` of bytes with `pause` seconds between them, then read until the server closes;
    returns what came back and the seconds from the first byte sent to the close."""
    client = socket.create_connection(address, timeout=wait)
    began = time.monotonic()
    try:
        for piece in pieces:
            client.sendall(piece)
            time.sleep(pause)
    except OSError:
        pass  # the server shut the connection while we were still sending
    answer = b""
    try:
        while chunk := client.recv(65536):
            answer += chunk
    except ConnectionResetError:
        pass
    client.close()
    return answer, time.monotonic() - began


def parsed(answer: bytes) -> tuple[int, dict]:
    """(status, JSON body) of a whole HTTP answer."""
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    length = next(int(line.split(":")[1]) for line in lines if line.lower().startswith("content-length:"))
    assert len(body) == length and "content-type: application/json" in head.decode().lower()
    return int(lines[0].split()[1]), strict_json(body)


def request(path: str, body: bytes, headers: dict) -> bytes:
    head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    return f"POST {path} HTTP/1.1\r\nHost: x\r\n".encode() + head.encode("latin-1") + b"\r\n" + body


def test_an_image_with_only_faint_ink_is_answered(server):
    image = np.zeros((100, 100))
    image[0, 0] = image[99, 99] = 0.06  # two faint corners: resized to 20x20, no ink is left
    digit = mnist_style(image)
    assert digit.shape == (28, 28) and np.isfinite(digit).all() and 0 <= digit.min() <= digit.max() <= 1
    status, answer = post(server + "/api/predict", {"image": image.tolist()})
    assert status == 200 and answer["prediction"] in range(10)


@pytest.mark.parametrize("shape, status", [((1, 1), 200), ((1, 1000), 200), ((1000, 1), 200), ((1, 1001), 400),
                                           ((1001, 1), 400), ((0, 5), 400)])
def test_an_image_of_one_to_1000_pixels_each_way_is_answered(server, shape, status):
    image = np.zeros(shape)
    image[..., :1] = 0.7  # a line of ink down the left edge
    code, answer = post(server + "/api/predict", {"image": image.tolist()})
    assert code == status and (answer["prediction"] in range(10) if status == 200
                               else "at most 1000 pixels each way" in answer["error"])


def test_a_content_length_in_other_digits_than_ascii_is_a_400(strict_server):
    body = b'{"expression": "x1", "values": {"x1": 1}}'
    for length in ("\u00b9", "\u00b2" * 2):  # superscript digits: str.isdigit says yes, int() says no
        answer, _ = exchange(strict_server.server_address[:2],
                             [request("/api/tape", body, {"Content-Type": "application/json", "Content-Length": length})])
        status, payload = parsed(answer)
        assert status == 400 and "ASCII digits" in payload["error"]


def test_a_client_sending_a_byte_now_and_then_is_cut_off_at_the_deadline(strict_server):
    address = strict_server.server_address[:2]
    drip = [request("/api/tape", b"", {"Content-Type": "application/json", "Content-Length": "40"})]
    drip += [b"{"] + [b" "] * 20  # a byte every 0.1 s: each read is quick, the whole is not
    results = {}
    slow = threading.Thread(target=lambda: results.update(slow=exchange(address, drip, pause=0.1)))
    slow.start()
    time.sleep(0.1)
    still_answering(f"http://127.0.0.1:{address[1]}")  # others are served meanwhile
    slow.join(10)
    answer, seconds = results["slow"]
    status, payload = parsed(answer)
    assert status == 408 and "more than 0.5 s" in payload["error"]
    assert 0.4 < seconds < 2.0


def test_a_failure_of_the_server_is_a_500_in_json_and_the_server_goes_on(strict_server, monkeypatch, capsys):
    def broken(request):
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(strict_server.page, "predict", broken)
    answer, _ = exchange(strict_server.server_address[:2], [request("/api/predict", b"{}", {
        "Content-Type": "application/json", "Content-Length": "2"})])
    status, payload = parsed(answer)
    assert status == 500 and "ZeroDivisionError" in payload["error"]
    assert "connection: close" in answer.partition(b"\r\n\r\n")[0].decode().lower().split("\r\n")  # a 500 ends the connection
    assert "Traceback" in capsys.readouterr().err  # logged for whoever runs the server
    still_answering(f"http://127.0.0.1:{strict_server.server_address[1]}")


@pytest.mark.parametrize("raw, status", [
    (b"PUT /api/tape HTTP/1.1\r\n\r\n", 501),
    (b"GARBAGE\r\n\r\n", 400),
    (b"GET /" + b"a" * 70000 + b" HTTP/1.1\r\n\r\n", 414),
])
def test_what_the_base_server_refuses_is_refused_in_json(strict_server, raw, status):
    answer, _ = exchange(strict_server.server_address[:2], [raw])
    assert parsed(answer)[0] == status


def test_a_client_gone_before_its_answer_is_one_line_of_the_log(strict_server, capsys):
    try:
        raise BrokenPipeError(32, "Broken pipe")
    except BrokenPipeError:
        strict_server.handle_error(None, ("127.0.0.7", 5555))
    assert capsys.readouterr().err == "127.0.0.7 went away before its answer (BrokenPipeError)\n"


PIECES = st.one_of(
    st.binary(max_size=64),
    st.sampled_from([b"{", b"}", b'{"image": [[0.5]]}', b'{"expression": "x1", "values": {"x1": 2}}', b"\xb9",
                     b"\r\n", b"[" * 20, b"\x00", b"NaN"]),
)
HEADERS = st.fixed_dictionaries({}, optional={
    "Content-Type": st.sampled_from(["application/json", "text/plain", "application/json; charset=utf-8", ""]),
    "Content-Length": st.one_of(st.integers(0, 200).map(str), st.sampled_from(["-1", "1e3", "\u00b9", "99999999", ""])),
    "Transfer-Encoding": st.just("chunked"),
})


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(path=st.sampled_from(["/api/predict", "/api/tape", "/", "/nothing"]), headers=HEADERS,
       body=st.lists(PIECES, max_size=6), pause=st.sampled_from([0.0, 0.0, 0.05, 0.2]))
def test_any_request_is_answered_in_json_or_closed_within_the_deadline(strict_server, path, headers, body, pause):
    pieces = [request(path, b"", headers), *body]
    answer, seconds = exchange(strict_server.server_address[:2], pieces, pause=pause)
    assert seconds < 0.5 + 1.5 + pause * len(pieces)  # the deadline, and what a loaded machine adds
    if answer:  # answered: a whole HTTP answer with a status and JSON (a page for GET /)
        status, payload = parsed(answer) if path != "/" or b"json" in answer.split(b"\r\n\r\n")[0] else (200, {})
        assert 200 <= status < 600 and (status == 200 or "error" in payload)
    still_answering(f"http://127.0.0.1:{strict_server.server_address[1]}")


@pytest.mark.parametrize("payload", [{"x": (float("nan"),)}, {"x": [(1.0, float("inf"))]}, {"x": {"y": (float("-inf"),)}}])
def test_an_answer_is_strict_json_or_refused(payload):
    """Infinite and NaN numbers the answer's conversion does not reach (in a tuple) are refused
    rather than sent as JavaScript's NaN, which no JSON parser has to take."""
    try:
        body = serve._json(payload)
    except ValueError:
        return
    strict_json(body)


def lines_of(stream) -> queue.Queue:
    """The lines of `stream` as they come, read by a thread of their own (so a wait can time out)."""
    lines = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in iter(stream.readline, "")], daemon=True).start()
    return lines


def test_main_listens_and_names_its_url_at_once_on_a_pipe(model_file):
    """python -m mlp.serve as a person runs it, its output piped (as by a process manager): the
    line with the URL comes at once, not when a buffer fills; the page is served there; Ctrl-C stops it."""
    root = Path(serve.__file__).resolve().parents[2]  # mlp/programs/serve.py
    process = subprocess.Popen([sys.executable, "-m", "mlp.serve", str(model_file), "--port", "0"], cwd=root,
                               env={**{k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"},
                                    "PYTHONPATH": str(root)}, stdout=subprocess.PIPE,
                               stderr=subprocess.DEVNULL, text=True)
    try:
        lines = lines_of(process.stdout)
        assert lines.get(timeout=60) == f"serving {model_file}\n"
        url = re.fullmatch(r"open (http://127\.0\.0\.1:(\d+))/  \(Ctrl-C stops\)\n", lines.get(timeout=10))
        assert url and int(url[2]) > 0
        still_answering(url[1])
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=30)
    assert lines.get(timeout=5) == "stopped\n" and process.returncode == 0


@pytest.mark.parametrize("host, shown", [("::1", "[::1]"), ("127.0.0.1", "127.0.0.1")])
def test_main_prints_the_address_it_listens_on(model_file, monkeypatch, capsys, host, shown):
    """The URL printed is the one the server listens on, an IPv6 host in brackets."""
    made = []

    def made_and_kept(page, host, port):
        made.append(serve.Server((host, port), page))
        made[-1].serve_forever = lambda: None  # back at once: main closes the server and returns
        return made[-1]

    monkeypatch.setattr(serve, "make_server", made_and_kept)
    assert serve.main([str(model_file), "--host", host, "--port", "0"]) == 0
    port = made[0].server_address[1]
    assert port > 0 and capsys.readouterr().out == f"serving {model_file}\nopen http://{shown}:{port}/  (Ctrl-C stops)\n"


def test_with_no_model_given_the_newest_is_served_or_the_default_one_trained(model, tmp_path, monkeypatch, capsys):
    """find_model(None): the newest runs/*/model.npz by time written; with none, the training
    program's default run first, then what it wrote; its failure (or no model written) a clear exit."""
    from mlp import train

    def write(runs: Path, name: str, when: float | None = None) -> Path:
        (runs / name).mkdir(parents=True)
        checkpoint.save(runs / name / "model.npz", checkpoint.Checkpoint(model, 1, "adam", {}, {}, None, {}))
        if when is not None:
            os.utime(runs / name / "model.npz", (when, when))
        return runs / name / "model.npz"

    def training(runs: Path, status: int, writes: bool):
        """The training program as far as find_model sees it: its exit status, and a model.npz written or not."""
        def main(argv):
            trained.append(argv)
            if writes:
                write(runs, "default")
            return status
        monkeypatch.setattr(train, "RUNS", runs)
        monkeypatch.setattr(train, "main", main)

    trained, runs = [], tmp_path / "runs"
    training(runs, 0, True)
    saved, origin = serve.find_model(None)
    assert trained == [["--no-plots"]] and origin == f"serving {runs / 'default' / 'model.npz'}, just trained"
    np.testing.assert_array_equal(saved.kept.state_dict()["layers.0.weight"], model.state_dict()["layers.0.weight"])
    assert "no trained model found" in capsys.readouterr().err
    os.utime(runs / "default" / "model.npz", (1e6, 1e6))
    newest, _ = write(runs, "a", 3e6), write(runs, "z", 2e6)  # the newest is neither the first nor the last by name
    assert serve.find_model(None)[1] == f"serving {newest}, the newest model the training program wrote"
    assert len(trained) == 1
    for status, writes in ((1, True), (0, False)):  # training failed; or it ended well but wrote no model
        training(tmp_path / f"runs-{status}", status, writes)
        with pytest.raises(SystemExit, match="training failed"):
            serve.find_model(None)
