// Video panel: /v1/videos. Creates a job, polls it (the progress bar follows `progress`),
// then plays the MP4 in the page (fetched with the key, shown from a blob URL) beside its
// spritesheet. A conditional model's prompt names its labels in turn ("a sneaker turning
// into a bag"); the labels are listed under the prompt.

import { ApiError, call, getJSON, numberOrNull, postJSON, showError } from "./api.js";
import { ms } from "./chat.js";

const $ = (id) => document.getElementById(id);
const sleep = (t) => new Promise((resolve) => setTimeout(resolve, t));

export function initVideo(getModels) {
  const modelSelect = $("video-model");
  const status = $("video-status");
  const error = $("video-error");
  const bar = $("video-progress");
  const player = $("video-player");
  const sheet = $("video-sheet");
  const button = $("video-generate");
  let urls = [];

  function model() {
    return getModels().find((m) => m.id === modelSelect.value);
  }

  function refresh() {
    const m = model();
    const labels = m?.labels || [];
    $("video-labels").textContent = labels.length ? `labels: ${labels.join(", ")}` : "";
    const most = m?.limits?.max_seconds;
    $("video-seconds").max = most ? String(most) : "";
  }

  modelSelect.addEventListener("change", refresh);

  async function blobUrl(id, variant) {
    const response = await call(`/v1/videos/${id}/content?variant=${variant}`);
    const url = URL.createObjectURL(await response.blob());
    urls.push(url);
    return url;
  }

  $("video-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const m = model();
    const seed = numberOrNull($("video-seed")) ?? Math.floor(Math.random() * 2 ** 31);
    const body = {
      model: modelSelect.value,
      prompt: $("video-prompt").value,
      seconds: String(numberOrNull($("video-seconds")) ?? 4),
      seed,
    };
    if (m?.image_size) body.size = `${m.image_size}x${m.image_size}`;
    const narration = $("video-narration").value.trim();
    if (narration) body.narration = narration;
    showError(error, null);
    button.disabled = true;
    bar.value = 0;
    status.textContent = `${body.model}: queued…`;
    const started = performance.now();
    try {
      let job = await postJSON("/v1/videos", body);
      while (job.status === "queued" || job.status === "in_progress") {
        bar.value = job.progress;
        status.textContent = `${body.model}: ${job.status.replace("_", " ")} ${job.progress}%`;
        await sleep(250);
        job = await getJSON(`/v1/videos/${job.id}`);
      }
      if (job.status !== "completed") {
        throw new ApiError(job.error?.message || `the video ${job.status}`, job.error || {});
      }
      bar.value = 100;
      for (const url of urls) URL.revokeObjectURL(url);
      urls = [];
      player.src = await blobUrl(job.id, "video");
      sheet.src = await blobUrl(job.id, "spritesheet");
      player.dataset.id = job.id;
      status.textContent =
        `${body.model} · ${job.seconds} s · ${job.size} · seed ${seed} · ` +
        `${ms(performance.now() - started)}`;
    } catch (err) {
      status.textContent = "";
      showError(error, err instanceof ApiError ? err : new ApiError(String(err.message || err)));
    } finally {
      button.disabled = false;
    }
  });

  return refresh;
}
