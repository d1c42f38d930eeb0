// Chat panel: /v1/chat/completions or /v1/completions, streamed token by token (SSE).
// Stop aborts the fetch: the gateway sees the connection close and cancels the model's work.

import { ApiError, call, events, numberOrNull, showError } from "./api.js";

const $ = (id) => document.getElementById(id);

export function initChat() {
  const log = $("chat-log");
  const input = $("chat-input");
  const send = $("chat-send");
  const stop = $("chat-stop");
  const status = $("chat-status");
  const error = $("chat-error");
  let history = []; // chat mode: the conversation sent with each turn
  let controller = null;

  function entry(kind, text) {
    const div = document.createElement("div");
    div.className = `msg ${kind}`;
    const role = document.createElement("span");
    role.className = "role";
    role.textContent = kind;
    const body = document.createElement("span");
    body.className = "text";
    body.textContent = text;
    div.append(role, body);
    log.append(div);
    log.scrollTop = log.scrollHeight;
    return div;
  }

  function clear() {
    history = [];
    log.replaceChildren();
    status.textContent = "";
    showError(error, null);
  }

  $("chat-mode").addEventListener("change", clear);
  $("chat-clear").addEventListener("click", clear);
  stop.addEventListener("click", () => controller?.abort());
  input.addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey) {
      e.preventDefault();
      $("chat-form").requestSubmit();
    }
  });

  $("chat-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    if (controller) return;
    const text = input.value;
    const chat = $("chat-mode").value === "chat";
    const model = $("chat-model").value;
    const body = { model, stream: true, stream_options: { include_usage: true } };
    const temperature = numberOrNull($("chat-temperature"));
    const maxTokens = numberOrNull($("chat-max-tokens"));
    const seed = numberOrNull($("chat-seed"));
    if (temperature !== null) body.temperature = temperature;
    if (maxTokens !== null) body.max_tokens = maxTokens;
    if (seed !== null) body.seed = seed;
    let path;
    if (chat) {
      body.messages = [...history, { role: "user", content: text }];
      path = "/v1/chat/completions";
    } else {
      body.prompt = text;
      path = "/v1/completions";
    }

    showError(error, null);
    controller = new AbortController();
    send.disabled = true;
    stop.disabled = false;
    status.textContent = `${model}: waiting for the first token…`;
    const started = performance.now();
    let first = null;
    let tokens = 0;
    let usage = null;
    let finish = null;
    let answer = "";
    const asked = entry(chat ? "user" : "prompt", text);
    const out = entry(chat ? "assistant" : "completion", "");
    out.dataset.state = "waiting";
    const textEl = out.querySelector(".text");
    try {
      const response = await call(path, { method: "POST", body, signal: controller.signal });
      input.value = "";
      out.dataset.state = "streaming";
      for await (const chunk of events(response)) {
        if (chunk.usage) usage = chunk.usage;
        const choice = chunk.choices?.[0];
        if (!choice) continue;
        const delta = chat ? choice.delta?.content : choice.text;
        if (delta) {
          first ??= performance.now() - started;
          tokens += 1;
          answer += delta;
          textEl.textContent = answer;
          log.scrollTop = log.scrollHeight;
          status.textContent = `${model}: streaming · ${tokens} chunks · first token ${ms(first)}`;
        }
        if (choice.finish_reason) finish = choice.finish_reason;
      }
      out.dataset.state = "done";
      const n = usage ? usage.completion_tokens : tokens;
      const elapsed = performance.now() - started;
      const rate =
        first !== null && n > 1
          ? ` · ${((n - 1) / ((elapsed - first) / 1000)).toFixed(1)} tokens/s`
          : "";
      status.textContent =
        (answer ? "" : "an empty answer (the model ended at once) · ") +
        `${model}: ${n} tokens · first token ${first === null ? "–" : ms(first)}${rate}` +
        ` · finish: ${finish ?? "none"}`;
      if (chat) history.push({ role: "user", content: text }, { role: "assistant", content: answer });
    } catch (err) {
      if (err.name === "AbortError") {
        out.dataset.state = "stopped";
        status.textContent = `${model}: stopped after ${tokens} chunks (the gateway cancelled the request)`;
        if (chat) history.push({ role: "user", content: text }, { role: "assistant", content: answer });
      } else if (!answer) {
        // refused (or failed before any token): the turn never happened; the input stays
        asked.remove();
        out.remove();
        status.textContent = "";
        showError(error, err instanceof ApiError ? err : new ApiError(String(err.message || err)));
      } else {
        out.dataset.state = "error";
        status.textContent = "";
        showError(error, err instanceof ApiError ? err : new ApiError(String(err.message || err)));
      }
    } finally {
      controller = null;
      send.disabled = false;
      stop.disabled = true;
    }
  });
}

export function ms(t) {
  return t >= 1000 ? `${(t / 1000).toFixed(2)} s` : `${Math.round(t)} ms`;
}
