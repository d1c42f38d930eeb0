// The playground: tabs, the API key, the model list shared by every panel.

import { ApiError, apiKey, fillModels, listModels, setApiKey, showError } from "./api.js";
import { initChat } from "./chat.js";
import { initImages } from "./images.js";
import { initJobs } from "./jobs.js";
import { initSpeech } from "./speech.js";
import { initSystem } from "./system.js";
import { initVideo } from "./video.js";

const $ = (id) => document.getElementById(id);
const TABS = ["chat", "images", "speech", "jobs", "video", "system"];
let models = [];
let current = "chat";

const refreshLabels = initImages(() => models);
const refreshVoices = initSpeech(() => models);
const refreshVideo = initVideo(() => models);
initChat();
const system = initSystem(setModels, () => current === "system");
const jobs = initJobs(() => current === "jobs");

function setModels(list) {
  models = list;
  fillModels($("chat-model"), models, "text");
  fillModels($("image-model"), models, "image");
  fillModels($("speech-model"), models, "audio");
  fillModels($("video-model"), models, "video");
  refreshLabels();
  refreshVoices();
  refreshVideo();
}

async function loadModels() {
  const global = $("global-error");
  try {
    setModels(await listModels());
    showError(global, null);
    document.body.dataset.models = "loaded";
  } catch (err) {
    showError(global, err instanceof ApiError ? err : new ApiError(String(err.message || err)));
    document.body.dataset.models = "error";
    if (err.status === 401 || err.status === 403) $("api-key").focus();
  }
}

function show(tab) {
  current = TABS.includes(tab) ? tab : "chat";
  for (const t of TABS) {
    $(`tab-${t}`).setAttribute("aria-selected", String(t === current));
    $(`panel-${t}`).hidden = t !== current;
  }
  if (location.hash !== `#${current}`) history.replaceState(null, "", `#${current}`);
  system.schedule();
  jobs.schedule();
}

for (const t of TABS) $(`tab-${t}`).addEventListener("click", () => show(t));
window.addEventListener("hashchange", () => show(location.hash.slice(1)));

$("api-key").value = apiKey();
$("key-form").addEventListener("submit", (e) => {
  e.preventDefault();
  setApiKey($("api-key").value.trim());
  loadModels();
  if (current === "system") system.refresh();
  if (current === "jobs") jobs.refresh();
});

show(location.hash.slice(1));
loadModels();
