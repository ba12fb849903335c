// The page's two parts, each talking to the real engine through a JSON endpoint.

async function post(path, body) {
  const response = await fetch(path, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
  const text = await response.text();
  let answer;
  try {
    answer = JSON.parse(text);
  } catch {
    throw new Error(`the server answered ${response.status} ${response.statusText}, not JSON`);
  }
  if (!response.ok) throw Object.assign(new Error(answer.error), answer);
  return answer;
}

// -- Draw a digit -------------------------------------------------------------------------------

const pad = document.getElementById("pad");
const pen = pad.getContext("2d");
const SENT_SIDE = 112; // the drawing goes to the server at this size; it makes the 28x28 digit
let drawing = false, pending = null;

function clearPad() {
  pen.fillStyle = "#000";
  pen.fillRect(0, 0, pad.width, pad.height);
  document.getElementById("prediction").textContent = "draw something";
  document.getElementById("bars").innerHTML = "";
  document.getElementById("hidden").innerHTML = "";
  document.getElementById("seen").getContext("2d").clearRect(0, 0, 112, 112);
}

function point(event) {
  const box = pad.getBoundingClientRect();
  return [(event.clientX - box.left) * pad.width / box.width, (event.clientY - box.top) * pad.height / box.height];
}

pad.addEventListener("pointerdown", (event) => {
  drawing = true;
  pad.setPointerCapture(event.pointerId);
  const [x, y] = point(event);
  pen.beginPath();
  pen.moveTo(x, y);
  pen.lineTo(x + 0.1, y + 0.1);
  stroke();
});
pad.addEventListener("pointermove", (event) => {
  if (!drawing) return;
  const [x, y] = point(event);
  pen.lineTo(x, y);
  stroke();
  schedulePrediction(150);
});
pad.addEventListener("pointerup", () => { drawing = false; schedulePrediction(0); });
document.getElementById("clear").addEventListener("click", clearPad);

function stroke() {
  pen.strokeStyle = "#fff";
  pen.lineWidth = 20;
  pen.lineCap = pen.lineJoin = "round";
  pen.stroke();
}

function schedulePrediction(delay) {
  clearTimeout(pending);
  pending = setTimeout(predict, delay);
}

function inkRows() {
  const small = document.createElement("canvas");
  small.width = small.height = SENT_SIDE;
  const context = small.getContext("2d");
  context.drawImage(pad, 0, 0, SENT_SIDE, SENT_SIDE);
  const data = context.getImageData(0, 0, SENT_SIDE, SENT_SIDE).data;
  const rows = [];
  for (let r = 0; r < SENT_SIDE; r++) {
    const row = [];
    for (let c = 0; c < SENT_SIDE; c++) row.push(Math.round(data[(r * SENT_SIDE + c) * 4] / 2.55) / 100);
    rows.push(row);
  }
  return rows;
}

async function predict() {
  try {
    showPrediction(await post("/api/predict", { image: inkRows() }));
  } catch (error) {
    document.getElementById("prediction").textContent = error.message;
  }
}

function showPrediction(answer) {
  document.getElementById("prediction").textContent = `${answer.label} (${(100 * answer.probabilities[answer.prediction]).toFixed(1)}%)`;
  const seen = document.getElementById("seen").getContext("2d");
  answer.pixels.forEach((row, r) => row.forEach((v, c) => {
    const grey = Math.round(255 * v);
    seen.fillStyle = `rgb(${grey},${grey},${grey})`;
    seen.fillRect(c * 4, r * 4, 4, 4);
  }));
  document.getElementById("bars").innerHTML = answer.probabilities.map((p, k) =>
    `<div class="bar${k === answer.prediction ? " best" : ""}" title="${answer.classes[k]}: ${(100 * p).toFixed(2)}%">` +
    `<div class="fill" style="height:${Math.max(1, 100 * p)}%"></div><div class="name">${answer.classes[k]}</div></div>`).join("");
  const units = answer.hidden.flat();
  const top = Math.max(1e-9, ...units.map(Math.abs));
  document.getElementById("hidden").innerHTML = units.map((a, i) =>
    `<div class="unit" title="unit ${i}: ${a.toFixed(3)}" style="background: rgba(192,57,43,${(Math.abs(a) / top).toFixed(3)})"></div>`).join("");
}

// -- Explore a tape -----------------------------------------------------------------------------

function parseValues(text) {
  const values = {};
  for (const part of text.split(",")) {
    if (!part.trim()) continue;
    const [name, value] = part.split("=").map((s) => s.trim());
    values[name] = value === undefined ? "" : value;
  }
  return values;
}

// Numbers as the table shows them; the server sends infinities and NaN as "Infinity", "-Infinity", "NaN".
const format = (x) => typeof x === "string" ? x
  : (Math.abs(x) < 1e-4 && x !== 0) || Math.abs(x) >= 1e6 ? x.toExponential(3) : Number(x.toPrecision(6)).toString();

async function recordTape(event) {
  if (event) event.preventDefault();
  const error = document.getElementById("tape-error");
  const body = document.querySelector("#tape-table tbody");
  try {
    const answer = await post("/api/tape", {
      expression: document.getElementById("expression").value,
      values: parseValues(document.getElementById("values").value),
    });
    error.hidden = true;
    const gradient = Object.entries(answer.gradient).map(([n, g]) => `df/d${n} = ${format(g)}`).join(",  ");
    document.getElementById("tape-result").textContent = `f = ${format(answer.value)};  ${gradient}`;
    body.innerHTML = answer.nodes.map((n) =>
      `<tr class="${n.name === answer.output ? "output" : ""}"><td>${n.name}</td><td>${n.op}</td>` +
      `<td>${n.parents.join(", ") || "-"}</td><td>${n.partials.map(format).join(", ") || "-"}</td><td>${format(n.adjoint)}</td></tr>`).join("");
  } catch (failure) {
    error.textContent = failure.message;
    error.hidden = false;
    body.innerHTML = "";
    document.getElementById("tape-result").textContent = "";
  }
}

document.getElementById("tape-form").addEventListener("submit", recordTape);
clearPad();
recordTape();
