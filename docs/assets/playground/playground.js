// The playground: dcganlib's shipped generators, run in the browser by a plain-JavaScript forward pass.
// Each model is a JSON description and a file of float32 weights written by dcganlib.playground (BatchNorm folded
// into the transposed convolutions). window.dcganPlayground exposes the forward pass and the page's state to tests.
(function () {
  "use strict";
  const root = document.getElementById("dcgan-playground");
  if (!root) {
    return;
  }
  const base = new URL(".", document.currentScript.src);
  const models = {};
  const state = { model: null, lastRenderMs: null };

  async function loadModel(name) {
    if (!models[name]) {
      const description = await (await fetch(new URL(name + ".json", base))).json();
      const buffer = await (await fetch(new URL(description.weights, base))).arrayBuffer();
      const values = new Float32Array(buffer);
      const slice = (range) => values.subarray(range[0], range[0] + range[1]);
      for (const layer of description.layers) {
        for (const key of ["weight", "bias", "scale", "shift"]) {
          if (layer[key]) {
            layer[key] = slice(layer[key]);
          }
        }
      }
      models[name] = description;
    }
    return models[name];
  }

  // out[co][y*s - p + ky][x*s - p + kx] += in[ci][y][x] * w[ci][co][ky][kx]
  function transposedConvolution(input, size, layer) {
    const k = layer.kernel, s = layer.stride, p = layer.padding, cout = layer.out, cin = layer.in;
    const full = (size - 1) * s + k, outSize = full - 2 * p;
    const out = new Float32Array(cout * outSize * outSize);
    const w = layer.weight;
    for (let ci = 0; ci < cin; ci++) {
      for (let y = 0; y < size; y++) {
        for (let x = 0; x < size; x++) {
          const v = input[(ci * size + y) * size + x];
          if (v === 0) {
            continue;  // after ReLU, many inputs are exactly zero
          }
          for (let co = 0; co < cout; co++) {
            const wBase = (ci * cout + co) * k * k, oBase = co * outSize * outSize;
            for (let ky = 0; ky < k; ky++) {
              const oy = y * s - p + ky;
              if (oy < 0 || oy >= outSize) {
                continue;
              }
              for (let kx = 0; kx < k; kx++) {
                const ox = x * s - p + kx;
                if (ox >= 0 && ox < outSize) {
                  out[oBase + oy * outSize + ox] += v * w[wBase + ky * k + kx];
                }
              }
            }
          }
        }
      }
    }
    return [out, outSize];
  }

  // Images (channels * size * size, in [-1, 1]) for one latent z and, for a conditional model, a class label.
  function pixels(model, z, label) {
    let x = Float32Array.from(z), size = 1;
    for (const layer of model.layers) {
      [x, size] = transposedConvolution(x, size, layer);
      const area = size * size;
      for (let c = 0; c < layer.out; c++) {
        const scale = layer.scale ? layer.scale[label * layer.out + c] : 1;
        const shift = layer.shift ? layer.shift[label * layer.out + c] : 0;
        for (let i = c * area; i < (c + 1) * area; i++) {
          const v = (x[i] + layer.bias[c]) * scale + shift;
          x[i] = layer.activation === "relu" ? Math.max(v, 0) : Math.tanh(v);
        }
      }
    }
    return x;
  }

  // Standard-normal latents from a seed: mulberry32 and Box-Muller (the page's own stream, not PyTorch's).
  function seededLatent(seed, zDim) {
    let a = seed >>> 0;
    const uniform = () => {
      a = (a + 0x6d2b79f5) >>> 0;
      let t = a;
      t = Math.imul(t ^ (t >>> 15), t | 1);
      t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
      return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
    };
    const z = new Float32Array(zDim);
    for (let i = 0; i < zDim; i += 2) {
      const r = Math.sqrt(-2 * Math.log(1 - uniform())), angle = 2 * Math.PI * uniform();
      z[i] = r * Math.cos(angle);
      if (i + 1 < zDim) {
        z[i + 1] = r * Math.sin(angle);
      }
    }
    return z;
  }

  function interpolate(a, b, t, method) {
    if (method === "slerp") {
      let dot = 0, na = 0, nb = 0;
      for (let i = 0; i < a.length; i++) {
        dot += a[i] * b[i];
        na += a[i] * a[i];
        nb += b[i] * b[i];
      }
      const cosine = dot / Math.sqrt(na * nb), omega = Math.acos(Math.min(1, Math.max(-1, cosine)));
      if (Math.abs(cosine) < 0.9995) {
        const wa = Math.sin((1 - t) * omega) / Math.sin(omega), wb = Math.sin(t * omega) / Math.sin(omega);
        return a.map((v, i) => wa * v + wb * b[i]);
      }
    }
    return a.map((v, i) => (1 - t) * v + t * b[i]);
  }

  const $ = (id) => document.getElementById(id);
  const canvas = $("pg-canvas");

  // The latent the controls describe: A->B interpolation, times the truncation psi, plus the direction steps.
  function latent() {
    const model = state.model, zDim = model.z_dim;
    const method = document.querySelector("input[name=pg-method]:checked").value;
    const z = interpolate(seededLatent(+$("pg-seed-a").value, zDim), seededLatent(+$("pg-seed-b").value, zDim),
      +$("pg-t").value, method).map((v) => v * +$("pg-psi").value);
    model.directions.forEach((direction, d) => {
      const step = +$("pg-direction-" + d).value;
      direction.vector.forEach((v, i) => { z[i] += step * v; });
    });
    return z;
  }

  function label() {
    return state.model.class_names.length ? +$("pg-class").value : 0;
  }

  function render() {
    const started = performance.now();
    const model = state.model, size = model.image_size, image = pixels(model, latent(), label());
    const context = canvas.getContext("2d"), data = context.createImageData(size, size);
    for (let i = 0; i < size * size; i++) {
      for (let c = 0; c < 3; c++) {
        const channel = model.channels === 3 ? c : 0;
        data.data[4 * i + c] = Math.round((image[channel * size * size + i] + 1) * 127.5);
      }
      data.data[4 * i + 3] = 255;
    }
    canvas.width = canvas.height = size;
    context.putImageData(data, 0, 0);
    state.lastRenderMs = performance.now() - started;
    $("pg-time").textContent = state.lastRenderMs.toFixed(1) + " ms";
  }

  function slider(id, label, min, max, step, value) {
    const row = document.createElement("label");
    row.className = "pg-row";
    row.innerHTML = `<span>${label}</span><input type="range" id="${id}" min="${min}" max="${max}" step="${step}"` +
      ` value="${value}"><output for="${id}">${(+value).toFixed(2)}</output>`;
    const input = row.querySelector("input");
    input.addEventListener("input", () => {
      row.querySelector("output").textContent = (+input.value).toFixed(2);
      render();
    });
    return row;
  }

  async function useModel(name) {
    state.model = await loadModel(name);
    const directions = $("pg-directions");
    directions.replaceChildren(...state.model.directions.map((d, i) => slider("pg-direction-" + i, d.label, -3, 3,
      0.06, 0)));
    const picker = $("pg-class");
    picker.replaceChildren(...state.model.class_names.map((name, i) => new Option(name, i)));
    $("pg-class-row").hidden = state.model.class_names.length === 0;
    render();
  }

  const controls = $("pg-controls");
  controls.append(slider("pg-t", "t (A→B)", 0, 1, 0.01, 0), slider("pg-psi", "truncation ψ", 0, 1, 0.01, 1));
  for (const id of ["pg-seed-a", "pg-seed-b", "pg-class"]) {
    $(id).addEventListener("input", render);
  }
  document.querySelectorAll("input[name=pg-method]").forEach((radio) => radio.addEventListener("change", render));
  $("pg-model").addEventListener("change", (event) => useModel(event.target.value));

  window.dcganPlayground = {
    ready: useModel($("pg-model").value),
    loadModel,
    pixels: async (name, z, label) => Array.from(pixels(await loadModel(name), z, label || 0)),
    latent: () => Array.from(latent()),
    label,
    canvasPixels: () => {
      const size = state.model.image_size;
      return Array.from(canvas.getContext("2d").getImageData(0, 0, size, size).data);
    },
    lastRenderMs: () => state.lastRenderMs,
  };
})();
