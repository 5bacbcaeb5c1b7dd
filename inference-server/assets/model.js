// The model page: builds a form from the model's v2 metadata and card, sends
// it to the v2 infer endpoint, and shows the answer. Standard library only.
"use strict";

(function () {
  const MAX_BATCH_ROWS = 5000;
  const NUMERIC = ["FP16", "FP32", "FP64", "INT8", "INT16", "INT32", "INT64", "UINT8", "UINT16", "UINT32", "UINT64"];

  const model = document.body.dataset.model;
  // The page is /models/NAME under whatever prefix a public route puts it (/team/iris/models/NAME):
  // every call goes under the same prefix, so the page works behind a path-prefix route.
  const base = location.pathname.replace(/\/models\/[^/]*$/, "");
  const modelPath = base + "/v2/models/" + encodeURIComponent(model);
  const $ = (id) => document.getElementById(id);

  let meta = null; // v2 model metadata
  let card = null; // feature names, class labels, example
  let input = null; // the one [-1, F] input the form fills
  let features = []; // one name per column

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "class") node.className = v;
      else if (k === "text") node.textContent = v;
      else node.setAttribute(k, v);
    }
    for (const c of children) node.append(c);
    return node;
  }

  // ---- the API key --------------------------------------------------------
  // When the server answers 401, the page asks for a key (the form
  // #key-form), keeps it in sessionStorage (this tab only, gone when the tab
  // closes) and sends it as `Authorization: Bearer KEY` from then on.

  const KEY_STORAGE = "modelship-api-key";
  let keyPrompt = null; // one question at a time, shared by the calls that wait for it
  let memoryKey = ""; // the key when sessionStorage is not available

  function storedKey() {
    try {
      return sessionStorage.getItem(KEY_STORAGE) || "";
    } catch (_) {
      return "";
    }
  }

  // `options` with the header that carries `key`.
  function withKeyValue(options, key) {
    const headers = Object.assign({}, (options && options.headers) || {}, { Authorization: "Bearer " + key });
    return Object.assign({}, options, { headers });
  }

  // Shows the key form and resolves once a key is entered; `refused` says
  // that the key sent was not accepted.
  function askForKey(refused) {
    if (keyPrompt) return keyPrompt;
    keyPrompt = new Promise((resolve) => {
      const form = $("key-form");
      const field = $("api-key");
      $("key-help").textContent = refused
        ? "That key was refused. Enter a valid one; it is kept in this browser tab only."
        : "Ask the model's owner for one. It is kept in this browser tab only, and sent with each request.";
      field.value = "";
      field.setAttribute("aria-invalid", refused ? "true" : "false");
      form.hidden = false;
      field.focus();
      const submit = (e) => {
        e.preventDefault();
        const key = field.value.trim();
        if (!key) {
          field.setAttribute("aria-invalid", "true");
          return;
        }
        try {
          sessionStorage.setItem(KEY_STORAGE, key);
        } catch (_) {
          // Without storage the key still works for this page: kept in memory below.
        }
        memoryKey = key;
        form.removeEventListener("submit", submit);
        form.hidden = true;
        keyPrompt = null;
        resolve();
      };
      form.addEventListener("submit", submit);
    });
    return keyPrompt;
  }

  // An error the server sent ({"error": "..."}) or a network failure, in
  // words. A 401 asks for the key and sends the request again with it.
  async function call(url, options) {
    let response;
    for (;;) {
      const sent = storedKey() || memoryKey;
      try {
        response = await fetch(url, sent ? withKeyValue(options, sent) : options);
      } catch (e) {
        throw new Error("Could not reach the server (" + e.message + ").");
      }
      if (response.status !== 401) break;
      await askForKey(sent !== "");
    }
    let body = null;
    try {
      body = await response.json();
    } catch (_) {
      body = null;
    }
    if (!response.ok) {
      const why = body && typeof body.error === "string" ? body.error : response.statusText;
      throw new Error("The server answered " + response.status + ": " + why);
    }
    return body;
  }

  function showError(container, message, details) {
    const box = el("div", { class: "error", role: "alert" }, el("strong", { text: "Error: " }), message);
    if (details && details.length) {
      box.append(el("ul", {}, ...details.map((d) => el("li", { text: d }))));
    }
    container.replaceChildren(box);
  }

  function formatNumber(x) {
    if (typeof x !== "number" || !isFinite(x)) return String(x);
    if (Number.isInteger(x)) return String(x);
    const a = Math.abs(x);
    return a !== 0 && (a < 1e-3 || a >= 1e6) ? x.toExponential(4) : String(Number(x.toPrecision(6)));
  }

  function className(index) {
    const labels = (card && card.class_labels) || [];
    return index >= 0 && index < labels.length ? labels[index] : "class " + index;
  }

  // ---- loading -----------------------------------------------------------

  async function load() {
    const status = $("load-status");
    try {
      [meta, card] = await Promise.all([
        call(modelPath, { headers: { Accept: "application/json" } }),
        call(base + "/models/" + encodeURIComponent(model) + "/card", { headers: { Accept: "application/json" } }),
      ]);
    } catch (e) {
      status.className = "error";
      status.textContent = "This model cannot be shown: " + e.message;
      return;
    }
    if (card.title) {
      $("title").textContent = card.title;
      document.title = card.title + " · modelship";
    }
    $("description").textContent = card.description || "";
    const sig = (t) => t.name + " " + t.datatype + " [" + t.shape.join(", ") + "]";
    $("signature").textContent =
      "model " + meta.name + " · " + meta.platform + " · in: " + meta.inputs.map(sig).join(", ") +
      " · out: " + meta.outputs.map(sig).join(", ");

    const picture = imageInput(meta.inputs, card);
    if (picture) {
      buildImageForm(picture);
      status.hidden = true;
      return;
    }
    const usable =
      meta.inputs.length === 1 &&
      meta.inputs[0].shape.length === 2 &&
      meta.inputs[0].shape[1] > 0 &&
      NUMERIC.includes(meta.inputs[0].datatype);
    if (!usable) {
      status.textContent =
        "This page can fill in models with one numeric input of shape [-1, F]. " +
        "Use the JSON API described in /openapi.json for this one.";
      return;
    }
    input = meta.inputs[0];
    const width = input.shape[1];
    features = Array.from({ length: width }, (_, i) =>
      card.feature_names && card.feature_names.length === width ? card.feature_names[i] : "feature " + (i + 1)
    );
    buildForm();
    $("csv-help").textContent =
      width + " numbers per line, in this order: " + features.join(", ") +
      ". A header line is skipped. Commas, semicolons, tabs or spaces separate values.";
    $("csv").placeholder = exampleRow().join(",");
    status.hidden = true;
    $("single").hidden = false;
    $("batch").hidden = false;
  }

  function isInteger() {
    return input.datatype.startsWith("INT") || input.datatype.startsWith("UINT");
  }

  function exampleRow() {
    const ex = (card && card.example) || [];
    return features.map((_, i) => (i < ex.length ? ex[i] : 0));
  }

  function buildForm() {
    const fields = $("fields");
    fields.replaceChildren(
      ...features.map((name, i) => {
        const id = "feature-" + i;
        return el(
          "div",
          { class: "field" },
          el("label", { for: id, text: name }),
          el("input", {
            id,
            name: id,
            type: "number",
            step: isInteger() ? "1" : "any",
            inputmode: "decimal",
            required: "",
            autocomplete: "off",
          })
        );
      })
    );
    resetToExample();
    $("single-form").addEventListener("submit", (e) => {
      e.preventDefault();
      predictOne();
    });
    $("reset").addEventListener("click", resetToExample);
    $("batch-form").addEventListener("submit", (e) => {
      e.preventDefault();
      scoreRows();
    });
  }

  function resetToExample() {
    exampleRow().forEach((v, i) => {
      const field = $("feature-" + i);
      field.value = String(v);
      field.removeAttribute("aria-invalid");
    });
    $("single-result").replaceChildren();
  }

  // ---- inference ---------------------------------------------------------

  async function infer(rows) {
    const body = {
      inputs: [{ name: input.name, shape: [rows.length, features.length], datatype: input.datatype, data: rows.flat() }],
    };
    const answer = await call(modelPath + "/infer", {
      method: "POST",
      headers: { "Content-Type": "application/json", Accept: "application/json" },
      body: JSON.stringify(body),
    });
    return interpret(answer.outputs || [], rows.length);
  }

  // Turns v2 outputs into one result per row: a class with probabilities
  // for a classifier, or named values for anything else.
  function interpret(outputs, n) {
    const perRow = (t) => {
      const width = t.shape.length > 1 ? t.shape.slice(1).reduce((a, b) => a * b, 1) : 1;
      return Array.from({ length: n }, (_, r) => t.data.slice(r * width, (r + 1) * width));
    };
    const isFloat = (t) => t.datatype.startsWith("FP");
    const label = outputs.find((t) => t.name === "label" && !isFloat(t)) ||
      outputs.find((t) => !isFloat(t) && t.shape.length === 1 && t.datatype !== "BYTES");
    const probs = outputs.find((t) => /prob/i.test(t.name) && isFloat(t) && t.shape.length === 2) ||
      (label ? outputs.find((t) => isFloat(t) && t.shape.length === 2 && t.shape[1] > 1) : undefined);
    if (label || probs) {
      const labels = label ? perRow(label) : null;
      const ps = probs ? perRow(probs) : null;
      return Array.from({ length: n }, (_, r) => {
        const p = ps ? ps[r] : null;
        const index = labels ? labels[r][0] : p.indexOf(Math.max(...p));
        return { kind: "class", index, name: className(index), probabilities: p };
      });
    }
    const columns = outputs.map((t) => ({ name: t.name, rows: perRow(t) }));
    return Array.from({ length: n }, (_, r) => ({
      kind: "values",
      values: columns.map((c) => ({ name: c.name, values: c.rows[r] })),
    }));
  }

  function readForm() {
    const row = [];
    const problems = [];
    features.forEach((name, i) => {
      const field = $("feature-" + i);
      const text = field.value.trim();
      const value = Number(text);
      const ok = text !== "" && isFinite(value) && (!isInteger() || Number.isInteger(value));
      field.setAttribute("aria-invalid", ok ? "false" : "true");
      if (!ok) problems.push("'" + name + "' needs " + (isInteger() ? "a whole number" : "a number") + ".");
      row.push(value);
    });
    return { row, problems };
  }

  async function predictOne() {
    const out = $("single-result");
    const { row, problems } = readForm();
    if (problems.length) {
      showError(out, "Please fix the form.", problems);
      return;
    }
    const button = $("predict");
    button.disabled = true;
    try {
      const [result] = await infer([row]);
      out.replaceChildren(...renderOne(result));
    } catch (e) {
      showError(out, e.message);
    } finally {
      button.disabled = false;
    }
  }

  function renderOne(result) {
    if (result.kind === "values") {
      return result.values.map((v) =>
        el(
          "p",
          { class: "answer" },
          "Predicted value",
          el("strong", { class: "prediction", text: v.values.map(formatNumber).join(", ") }),
          el("span", { class: "hint", text: "model output “" + v.name + "”" })
        )
      );
    }
    const parts = [el("p", { class: "answer" }, "Predicted class", el("strong", { class: "prediction", text: result.name }))];
    if (result.probabilities) {
      const list = el("ul", { class: "bars", "aria-label": "Probability of each class" });
      result.probabilities.forEach((p, i) => {
        const pct = Math.max(0, Math.min(100, p * 100));
        list.append(
          el(
            "li",
            { class: i === result.index ? "bar best" : "bar" },
            el("span", { class: "name", text: className(i) }),
            el("span", { class: "track", "aria-hidden": "true" }, el("span", { class: "fill", style: "display:block;width:" + pct.toFixed(1) + "%" })),
            el("span", { class: "pct", text: pct.toFixed(1) + "%" })
          )
        );
      });
      parts.push(el("h3", { class: "hint", text: "Probabilities" }), list);
    }
    return parts;
  }

  // ---- many rows ---------------------------------------------------------

  function parseRows(text) {
    const rows = [];
    const lines = [];
    const problems = [];
    let header = false;
    text.split(/\r?\n/).forEach((raw, i) => {
      const line = raw.trim();
      if (line === "" || line.startsWith("#")) return;
      const cells = line.split(/\s*[,;\t]\s*|\s+/).filter((c) => c !== "");
      const numbers = cells.map(Number);
      const numeric = cells.every((c, j) => isFinite(numbers[j]));
      if (!numeric && rows.length === 0 && problems.length === 0 && !header) {
        header = true; // the first non-empty line names the columns
        return;
      }
      if (!numeric) {
        const bad = cells.find((c, j) => !isFinite(numbers[j]));
        problems.push("line " + (i + 1) + ": '" + bad + "' is not a number");
      } else if (cells.length !== features.length) {
        problems.push("line " + (i + 1) + ": expected " + features.length + " values, got " + cells.length);
      } else {
        rows.push(numbers);
        lines.push(i + 1);
      }
    });
    return { rows, lines, problems, header };
  }

  async function scoreRows() {
    const out = $("batch-result");
    const { rows, lines, problems, header } = parseRows($("csv").value);
    if (rows.length === 0) {
      showError(out, problems.length ? "No row could be read." : "Paste at least one row of numbers.", problems);
      return;
    }
    if (rows.length > MAX_BATCH_ROWS) {
      showError(out, "Too many rows for the page (" + rows.length + "); at most " + MAX_BATCH_ROWS +
        ". Use `modelship-server predict` for files.");
      return;
    }
    const button = $("score");
    button.disabled = true;
    try {
      const results = await infer(rows);
      const parts = [];
      const skipped = problems.length ? ", " + problems.length + " skipped" : "";
      parts.push(el("p", { class: "summary", text: rows.length + " rows scored" + skipped + (header ? " (header line skipped)" : "") + "." }));
      if (problems.length) {
        parts.push(el("div", { class: "error", role: "alert" }, "Skipped lines:", el("ul", {}, ...problems.map((p) => el("li", { text: p })))));
      }
      parts.push(el("div", { class: "table-wrap", tabindex: "0", role: "region", "aria-label": "Scored rows" }, renderTable(rows, lines, results)));
      out.replaceChildren(...parts);
    } catch (e) {
      showError(out, e.message);
    } finally {
      button.disabled = false;
    }
  }

  function renderTable(rows, lines, results) {
    const head = [el("th", { scope: "col", text: "line" }), ...features.map((f) => el("th", { scope: "col", text: f }))];
    const first = results[0];
    if (first.kind === "class") {
      head.push(el("th", { scope: "col", class: "text", text: "class" }));
      if (first.probabilities) head.push(el("th", { scope: "col", text: "probability" }));
    } else {
      first.values.forEach((v) => head.push(el("th", { scope: "col", text: v.name })));
    }
    const body = results.map((res, r) => {
      const cells = [el("td", { text: String(lines[r]) }), ...rows[r].map((x) => el("td", { text: formatNumber(x) }))];
      if (res.kind === "class") {
        cells.push(el("td", { class: "text", text: res.name }));
        if (res.probabilities) cells.push(el("td", { text: (res.probabilities[res.index] * 100).toFixed(1) + "%" }));
      } else {
        res.values.forEach((v) => cells.push(el("td", { text: v.values.map(formatNumber).join(", ") })));
      }
      return el("tr", {}, ...cells);
    });
    return el("table", {}, el("thead", {}, el("tr", {}, ...head)), el("tbody", {}, ...body));
  }

  // ---- images ------------------------------------------------------------
  // A model whose one input is an image gets a drawing pad and an upload
  // instead of the form: a [-1, 1, H, W] or [-1, H, W] float input, or one the
  // card marks as an image (`image`: height, width, the values of no ink and of
  // full ink), such as scikit-learn's digits flattened to [-1, 64] with values
  // 0..16. The picture is scaled to W x H by averaging blocks of pixels, read
  // as ink 0..1 (the pad draws light on dark; an upload that is dark on light
  // is inverted), mapped to the model's values, flattened row-major and sent
  // as one row; the answer shows the most probable classes.

  const PAD = 224; // the drawing pad's size in canvas pixels
  const TOP_CLASSES = 3;

  // What to draw and send for the inputs, or null when they are not an image:
  // { height, width, background, ink, shape } with `shape` the one row's.
  function imageInput(inputs, card) {
    if (inputs.length !== 1 || !inputs[0].datatype.startsWith("FP")) return null;
    const s = inputs[0].shape;
    const marked = card && card.image;
    if (marked) {
      // The server refused the model at load unless the picture fits the input's shape.
      return { height: marked.height, width: marked.width, background: marked.background, ink: marked.ink, shape: [1, ...s.slice(1)] };
    }
    const plain = (height, width) => ({ height, width, background: 0, ink: 1, shape: [1, ...s.slice(1)] });
    if (s.length === 4 && s[0] === -1 && s[1] === 1 && s[2] > 0 && s[3] > 0) return plain(s[2], s[3]);
    if (s.length === 3 && s[0] === -1 && s[1] > 0 && s[2] > 0) return plain(s[1], s[2]);
    return null;
  }

  function buildImageForm(size) {
    input = meta.inputs[0];
    const pad = $("pad");
    pad.width = PAD;
    pad.height = PAD;
    const ctx = pad.getContext("2d", { willReadFrequently: true });
    const clear = () => {
      ctx.fillStyle = "#000";
      ctx.fillRect(0, 0, PAD, PAD);
      $("image-result").replaceChildren();
    };
    clear();
    $("image-help").textContent =
      "Draw with the mouse or a finger, or upload a picture; it is scaled to " + size.width + " × " + size.height +
      " pixels, light ink on a dark ground" +
      (size.background === 0 && size.ink === 1
        ? "."
        : "; the model reads each pixel as a number from " + formatNumber(size.background) + " (no ink) to " +
          formatNumber(size.ink) + " (full ink).");
    let drawing = false;
    const point = (e) => {
      const r = pad.getBoundingClientRect();
      return [((e.clientX - r.left) * PAD) / r.width, ((e.clientY - r.top) * PAD) / r.height];
    };
    const ink = () => {
      ctx.strokeStyle = "#fff";
      ctx.lineWidth = PAD / 9;
      ctx.lineCap = "round";
      ctx.lineJoin = "round";
      ctx.stroke();
    };
    pad.addEventListener("pointerdown", (e) => {
      drawing = true;
      pad.setPointerCapture(e.pointerId);
      const [x, y] = point(e);
      ctx.beginPath();
      ctx.moveTo(x, y);
      ctx.lineTo(x + 0.1, y);
      ink();
    });
    pad.addEventListener("pointermove", (e) => {
      if (!drawing) return;
      const [x, y] = point(e);
      ctx.lineTo(x, y);
      ink();
    });
    const stop = () => {
      drawing = false;
    };
    pad.addEventListener("pointerup", stop);
    pad.addEventListener("pointercancel", stop);
    $("clear-pad").addEventListener("click", clear);
    $("image-file").addEventListener("change", () => {
      const file = $("image-file").files[0];
      if (file) drawUpload(file, ctx).catch((e) => showError($("image-result"), e.message));
    });
    $("image-form").addEventListener("submit", (e) => {
      e.preventDefault();
      predictImage(ctx, size);
    });
    $("image").hidden = false;
  }

  // The upload, fitted into the pad on black; inverted when mostly light.
  async function drawUpload(file, ctx) {
    let bitmap;
    try {
      bitmap = await createImageBitmap(file);
    } catch (_) {
      throw new Error("'" + file.name + "' is not an image this browser can read.");
    }
    const scale = Math.min(PAD / bitmap.width, PAD / bitmap.height);
    const w = bitmap.width * scale;
    const h = bitmap.height * scale;
    ctx.fillStyle = "#000";
    ctx.fillRect(0, 0, PAD, PAD);
    ctx.drawImage(bitmap, (PAD - w) / 2, (PAD - h) / 2, w, h);
    const pixels = ctx.getImageData(0, 0, PAD, PAD);
    const d = pixels.data;
    let sum = 0;
    for (let i = 0; i < d.length; i += 4) sum += brightness(d, i);
    if (sum / (d.length / 4) > 0.5) {
      for (let i = 0; i < d.length; i += 4) {
        d[i] = 255 - d[i];
        d[i + 1] = 255 - d[i + 1];
        d[i + 2] = 255 - d[i + 2];
      }
      ctx.putImageData(pixels, 0, 0);
    }
    $("image-result").replaceChildren();
  }

  function brightness(d, i) {
    return (0.299 * d[i] + 0.587 * d[i + 1] + 0.114 * d[i + 2]) / 255;
  }

  // The pad as height × width values, row by row: the mean brightness (0..1) of
  // each block, mapped to the model's range from no ink to full ink.
  function padValues(ctx, size) {
    const d = ctx.getImageData(0, 0, PAD, PAD).data;
    const values = [];
    for (let r = 0; r < size.height; r++) {
      const y0 = Math.floor((r * PAD) / size.height);
      const y1 = Math.max(y0 + 1, Math.floor(((r + 1) * PAD) / size.height));
      for (let c = 0; c < size.width; c++) {
        const x0 = Math.floor((c * PAD) / size.width);
        const x1 = Math.max(x0 + 1, Math.floor(((c + 1) * PAD) / size.width));
        let sum = 0;
        for (let y = y0; y < y1; y++) for (let x = x0; x < x1; x++) sum += brightness(d, (y * PAD + x) * 4);
        const ink = sum / ((y1 - y0) * (x1 - x0));
        values.push(size.background + (size.ink - size.background) * ink);
      }
    }
    return values;
  }

  async function predictImage(ctx, size) {
    const out = $("image-result");
    const button = $("predict-image");
    button.disabled = true;
    try {
      const body = { inputs: [{ name: input.name, shape: size.shape, datatype: input.datatype, data: padValues(ctx, size) }] };
      const answer = await call(modelPath + "/infer", {
        method: "POST",
        headers: { "Content-Type": "application/json", Accept: "application/json" },
        body: JSON.stringify(body),
      });
      const [result] = interpret(answer.outputs || [], 1);
      out.replaceChildren(...renderTopClasses(result));
    } catch (e) {
      showError(out, e.message);
    } finally {
      button.disabled = false;
    }
  }

  function renderTopClasses(result) {
    if (result.kind !== "class" || !result.probabilities) return renderOne(result);
    const p = result.probabilities;
    const order = p.map((_, i) => i).sort((a, b) => p[b] - p[a]).slice(0, TOP_CLASSES);
    const list = el("ol", { class: "bars", id: "top-classes", "aria-label": "The most probable classes" });
    order.forEach((i) => {
      const pct = Math.max(0, Math.min(100, p[i] * 100));
      list.append(
        el(
          "li",
          { class: i === result.index ? "bar best" : "bar" },
          el("span", { class: "name", text: className(i) }),
          el("span", { class: "track", "aria-hidden": "true" }, el("span", { class: "fill", style: "display:block;width:" + pct.toFixed(1) + "%" })),
          el("span", { class: "pct", text: pct.toFixed(1) + "%" })
        )
      );
    });
    return [
      el("p", { class: "answer" }, "Predicted class", el("strong", { class: "prediction", text: result.name })),
      el("h3", { class: "hint", text: "Most probable classes" }),
      list,
    ];
  }

  load();
})();
