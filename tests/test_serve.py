"""The web page's server: the JSON endpoints on a real server on 127.0.0.1, and the drawing's
reduction to an MNIST digit."""
import http.client
import json
import urllib.error
import urllib.request

import numpy as np
import pytest

from mlp import checkpoint, serve
from mlp.drawing import mnist_style

def post(url: str, body, raw: bool = False) -> tuple[int, dict]:
    data = body if raw else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


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


@pytest.mark.parametrize("body, status, words", [
    (b"{not json", 400, ["not valid JSON"]),
    (b"[1, 2]", 400, ["must be a JSON object"]),
    (json.dumps({"pixels": [[0.0] * 27] * 28}).encode(), 400, ["pixels must be 28x28, got 28x27"]),
    (json.dumps({"image": [[0.0, 1.0], [0.5]]}).encode(), 400, ["rows of numbers of equal length"]),
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
    assert serve.main([str(tmp_path / "missing.npz")]) == 1


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
