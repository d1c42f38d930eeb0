// Images panel: /v1/images/generations (b64_json PNGs). A conditional model's label is the
// prompt; the seed is always sent (a random one when blank) and shown, so a picture can be
// made again.

import { ApiError, numberOrNull, postJSON, showError } from "./api.js";
import { ms } from "./chat.js";

const $ = (id) => document.getElementById(id);

export function initImages(getModels) {
  const modelSelect = $("image-model");
  const labelSelect = $("image-label");
  const status = $("image-status");
  const error = $("image-error");
  const grid = $("image-grid");
  const button = $("image-generate");

  function model() {
    return getModels().find((m) => m.id === modelSelect.value);
  }

  // Labels of the chosen model (conditional models list theirs in /v1/models).
  function refreshLabels() {
    const labels = model()?.labels || [];
    const previous = labelSelect.value;
    labelSelect.replaceChildren(...labels.map((l) => new Option(l, l, false, l === previous)));
    $("image-label-field").hidden = labels.length === 0;
    const limit = model()?.limits?.max_images;
    $("image-count").title = limit ? `at most ${limit} for this model` : "";
  }

  modelSelect.addEventListener("change", refreshLabels);

  $("image-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const m = model();
    const labels = m?.labels || [];
    const label = labels.length ? labelSelect.value : "";
    const seedInput = numberOrNull($("image-seed"));
    const seed = seedInput ?? Math.floor(Math.random() * 2 ** 31);
    const body = {
      model: modelSelect.value,
      prompt: label,
      n: numberOrNull($("image-count")) ?? 1,
      seed,
      response_format: "b64_json",
    };
    showError(error, null);
    button.disabled = true;
    status.textContent = `${body.model}: generating ${body.n}…`;
    const started = performance.now();
    try {
      const { data } = await postJSON("/v1/images/generations", body);
      const size = m?.image_size ? `${m.image_size}×${m.image_size}` : "";
      const images = data.map((item, i) => {
        const img = new Image();
        img.src = `data:image/png;base64,${item.b64_json}`;
        img.alt = `${body.model} ${label} #${i + 1}, seed ${seed}`.replace(/\s+/g, " ");
        img.title = img.alt;
        return img;
      });
      grid.replaceChildren(...images);
      grid.dataset.seed = String(seed);
      status.textContent =
        `${body.model}${label ? ` · ${label}` : ""} · ${data.length} images ${size} · ` +
        `seed ${seed} · ${ms(performance.now() - started)}`;
    } catch (err) {
      status.textContent = "";
      showError(error, err instanceof ApiError ? err : new ApiError(String(err.message || err)));
    } finally {
      button.disabled = false;
    }
  });

  return refreshLabels;
}
