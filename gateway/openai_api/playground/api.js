// Calls to the gateway's public OpenAI-compatible API (and /metrics), with the user's key.

const KEY_STORE = "aigc-playground-key";

export class ApiError extends Error {
  constructor(message, { status = 0, type = "", code = "", param = null } = {}) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.type = type;
    this.code = code;
    this.param = param;
  }

  get detail() {
    const parts = [];
    if (this.status) parts.push(`HTTP ${this.status}`);
    if (this.code) parts.push(this.code);
    if (this.param) parts.push(`param: ${this.param}`);
    return parts.join(" · ");
  }
}

export function apiKey() {
  return sessionStorage.getItem(KEY_STORE) || "";
}

export function setApiKey(key) {
  if (key) sessionStorage.setItem(KEY_STORE, key);
  else sessionStorage.removeItem(KEY_STORE);
}

// The API's own error ({"error": {message, type, param, code}}), else the status line and body.
async function errorOf(response) {
  const text = await response.text().catch(() => "");
  try {
    const e = JSON.parse(text).error;
    if (e && typeof e.message === "string") {
      return new ApiError(e.message, { status: response.status, ...e });
    }
  } catch {
    // not JSON: fall through
  }
  const body = text.trim().slice(0, 300);
  const what = `${response.status} ${response.statusText}`.trim();
  return new ApiError(body ? `${what}: ${body}` : what, { status: response.status });
}

// fetch with the key; resolves to an ok Response, else throws ApiError (never a bare failure).
// A FormData body goes as multipart (the browser writes its content type), any other as JSON.
export async function call(path, { method = "GET", body, signal } = {}) {
  const headers = {};
  const key = apiKey();
  if (key) headers.authorization = `Bearer ${key}`;
  const form = body instanceof FormData;
  if (body !== undefined && !form) headers["content-type"] = "application/json";
  let response;
  try {
    response = await fetch(path, {
      method,
      headers,
      signal,
      body: body === undefined || form ? body : JSON.stringify(body),
    });
  } catch (err) {
    if (err.name === "AbortError") throw err;
    throw new ApiError(`could not reach the gateway (${err.message})`);
  }
  if (!response.ok) throw await errorOf(response);
  return response;
}

export async function getJSON(path) {
  return (await call(path)).json();
}

export async function postJSON(path, body, signal) {
  return (await call(path, { method: "POST", body, signal })).json();
}

// Server-sent events of a streamed response: each `data:` payload parsed, until [DONE].
// An error event (sent once the stream began) is thrown as ApiError.
export async function* events(response) {
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buffer += value;
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        const block = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        const data = block
          .split("\n")
          .filter((line) => line.startsWith("data:"))
          .map((line) => line.slice(5).trimStart())
          .join("\n");
        if (!data) continue;
        if (data === "[DONE]") return;
        const event = JSON.parse(data);
        if (event.error) throw new ApiError(event.error.message, event.error);
        yield event;
      }
    }
  } finally {
    reader.cancel().catch(() => {});
  }
}

// Served models, one entry per model (aliases folded into `aliases`).
export async function listModels() {
  const { data } = await getJSON("/v1/models");
  const byRoot = new Map();
  for (const m of data) {
    const root = m.root || m.id;
    if (!byRoot.has(root)) byRoot.set(root, { ...m, id: root, aliases: [] });
    if (m.id !== root) byRoot.get(root).aliases.push(m.id);
  }
  return [...byRoot.values()];
}

// Shows an error in `el` as the API stated it (message first, then status and code).
export function showError(el, err) {
  if (!err) {
    el.hidden = true;
    el.replaceChildren();
    return;
  }
  const msg = document.createElement("span");
  msg.className = "msg";
  msg.textContent = err.message || String(err);
  const parts = [msg];
  if (err.detail) {
    const detail = document.createElement("span");
    detail.className = "detail";
    detail.textContent = err.detail;
    parts.push(detail);
  }
  el.replaceChildren(...parts);
  el.hidden = false;
}

// Fills a <select> with models of one modality (the default one selected, keeping a choice).
export function fillModels(select, models, modality) {
  const previous = select.value;
  const options = models
    .filter((m) => m.modality === modality)
    .map((m) => {
      const o = new Option(m.state && m.state !== "ready" ? `${m.id} (${m.state})` : m.id, m.id);
      o.title = m.description || "";
      o.selected = previous ? m.id === previous : Boolean(m.default);
      return o;
    });
  select.replaceChildren(...options);
  if (!options.length) select.replaceChildren(new Option(`no ${modality} model served`, ""));
}

export function numberOrNull(input) {
  const v = input.value.trim();
  return v === "" ? null : Number(v);
}
