// Chat panel: /v1/chat/completions or /v1/completions, streamed token by token (SSE).
// Stop aborts the fetch: the gateway sees the connection close and cancels the model's work.
// Chat mode may send a JSON schema (response_format) and tools; either mode may ask for token
// probabilities (answer.js shows them, and tool calls as calls).

import { Answer, completionEntries, initTokenTips } from "./answer.js";
import { ApiError, call, events, numberOrNull, showError } from "./api.js";

const $ = (id) => document.getElementById(id);

export function initChat() {
  const log = $("chat-log");
  const input = $("chat-input");
  const send = $("chat-send");
  const stop = $("chat-stop");
  const status = $("chat-status");
  const error = $("chat-error");
  const schemaBox = $("chat-schema");
  const toolsBox = $("chat-tools");
  const logprobsBox = $("chat-logprobs");
  let history = []; // chat mode: the conversation sent with each turn
  let controller = null;
  const hideTip = initTokenTips(log, $("chat-token-tip"));

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
    hideTip();
    log.replaceChildren();
    status.textContent = "";
    showError(error, null);
  }

  // What the collapsed extras send, in their summary; the schema and tools are chat-only.
  function extrasChanged() {
    const chat = $("chat-mode").value === "chat";
    $("chat-structure").disabled = !chat;
    $("chat-structure-note").hidden = chat;
    const on = [];
    if (chat && schemaBox.value.trim()) on.push("JSON schema");
    if (chat && toolsBox.value.trim()) {
      const parallel = $("chat-parallel").checked ? ", parallel" : "";
      on.push(`tools (${$("chat-tool-choice").value}${parallel})`);
    }
    if (logprobsBox.checked) on.push("token probabilities");
    $("chat-extras-on").textContent = on.length ? `· on: ${on.join(", ")}` : "";
  }
  const extras = [schemaBox, toolsBox, logprobsBox, $("chat-tool-choice"), $("chat-parallel")];
  for (const el of [...extras, $("chat-mode")]) {
    el.addEventListener("input", extrasChanged);
    el.addEventListener("change", extrasChanged);
  }
  for (const box of [schemaBox, toolsBox]) {
    box.addEventListener("input", () => box.removeAttribute("aria-invalid"));
  }
  extrasChanged();

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
    showError(error, null);
    schemaBox.removeAttribute("aria-invalid");
    toolsBox.removeAttribute("aria-invalid");
    if (chat) {
      body.messages = [...history, { role: "user", content: text }];
      path = "/v1/chat/completions";
      try {
        const schema = parsedBox(schemaBox, "The JSON schema", (v) =>
          isObject(v) ? "" : "must be a JSON object (a JSON schema)",
        );
        const tools = parsedBox(toolsBox, "The tools", (v) =>
          Array.isArray(v) && v.every(isObject)
            ? ""
            : 'must be a JSON list of tool objects: [{"type": "function", "function": {...}}]',
        );
        if (schema) {
          body.response_format = { type: "json_schema", json_schema: jsonSchema(schema) };
        }
        if (tools?.length) {
          body.tools = tools;
          body.tool_choice = $("chat-tool-choice").value;
          body.parallel_tool_calls = $("chat-parallel").checked;
        }
      } catch (err) {
        showError(error, err); // nothing was sent
        return;
      }
      if (logprobsBox.checked) {
        body.logprobs = true;
        body.top_logprobs = TOP_LOGPROBS;
      }
    } else {
      body.prompt = text;
      path = "/v1/completions";
      if (logprobsBox.checked) body.logprobs = TOP_LOGPROBS;
    }

    controller = new AbortController();
    send.disabled = true;
    stop.disabled = false;
    status.textContent = `${model}: waiting for the first token…`;
    const started = performance.now();
    let first = null;
    let tokens = 0;
    let usage = null;
    let finish = null;
    const asked = entry(chat ? "user" : "prompt", text);
    const out = entry(chat ? "assistant" : "completion", "");
    out.dataset.state = "waiting";
    if (body.response_format) out.classList.add("json");
    const answer = new Answer(out);
    // what the history keeps of this turn (a stopped turn's partial tool calls are left out)
    const turn = (whole) => {
      const reply = { role: "assistant", content: answer.content };
      if (whole && answer.calls.size) {
        reply.content = answer.content || null;
        reply.tool_calls = answer.toolCallList;
      }
      return [{ role: "user", content: text }, reply];
    };
    try {
      const response = await call(path, { method: "POST", body, signal: controller.signal });
      input.value = "";
      out.dataset.state = "streaming";
      for await (const chunk of events(response)) {
        if (chunk.usage) usage = chunk.usage;
        const choice = chunk.choices?.[0];
        if (!choice) continue;
        const delta = chat ? choice.delta?.content : choice.text;
        const calls = chat ? choice.delta?.tool_calls : null;
        if (delta || calls?.length) {
          first ??= performance.now() - started;
          tokens += 1;
          const entries = chat ? choice.logprobs?.content : completionEntries(choice.logprobs);
          answer.text(delta, entries);
          if (calls?.length) answer.toolCalls(calls);
          log.scrollTop = log.scrollHeight;
          status.textContent = `${model}: streaming · ${tokens} chunks · first token ${ms(first)}`;
        }
        if (choice.finish_reason) finish = choice.finish_reason;
      }
      out.dataset.state = "done";
      if (body.response_format) jsonNote(out, answer.content, finish);
      const n = usage ? usage.completion_tokens : tokens;
      const elapsed = performance.now() - started;
      const rate =
        first !== null && n > 1
          ? ` · ${((n - 1) / ((elapsed - first) / 1000)).toFixed(1)} tokens/s`
          : "";
      const said = answer.content || answer.calls.size;
      status.textContent =
        (said ? "" : "an empty answer (the model ended at once) · ") +
        `${model}: ${n} tokens · first token ${first === null ? "–" : ms(first)}${rate}` +
        ` · finish: ${finish ?? "none"}`;
      if (chat) history.push(...turn(true));
    } catch (err) {
      if (err.name === "AbortError") {
        out.dataset.state = "stopped";
        status.textContent = `${model}: stopped after ${tokens} chunks (the gateway cancelled the request)`;
        if (chat) history.push(...turn(false));
      } else if (!answer.content && !answer.calls.size) {
        // refused (or failed before any token): the turn never happened; the input stays
        asked.remove();
        out.remove();
        status.textContent = "";
        markField(err.param);
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

  // The box a refused field came from (the API names it in `param`), marked invalid.
  function markField(param) {
    if (typeof param !== "string") return;
    const box = param.startsWith("response_format")
      ? schemaBox
      : param.startsWith("tool")
        ? toolsBox
        : null;
    if (!box) return;
    box.setAttribute("aria-invalid", "true");
    box.closest("details").open = true;
  }
}

const TOP_LOGPROBS = 5;

function isObject(v) {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

// A box's JSON (null when empty); invalid JSON, or the wrong kind, is an error shown in the page.
function parsedBox(box, what, problemOf) {
  const raw = box.value.trim();
  if (!raw) return null;
  let value;
  let problem;
  try {
    value = JSON.parse(raw);
    problem = problemOf(value);
  } catch (err) {
    problem = `is not valid JSON (${err.message})`;
  }
  if (problem) {
    box.setAttribute("aria-invalid", "true");
    box.closest("details").open = true;
    box.focus();
    throw new ApiError(`${what} ${problem}. Nothing was sent.`);
  }
  return value;
}

// The schema box holds a JSON schema, or OpenAI's whole json_schema object ({name, schema}).
function jsonSchema(value) {
  if (typeof value.name === "string" && isObject(value.schema)) return value;
  return { name: "playground", schema: value };
}

// Whether a structured answer parses, under it.
function jsonNote(out, content, finish) {
  if (!content) return;
  let ok = true;
  try {
    JSON.parse(content);
  } catch {
    ok = false;
  }
  const note = document.createElement("span");
  note.className = `json-note ${ok ? "ok" : "bad"}`;
  note.textContent = ok
    ? "valid JSON"
    : `not valid JSON${finish === "length" ? " (cut at max tokens)" : ""}`;
  out.dataset.json = ok ? "valid" : "invalid";
  out.append(note);
}

export function ms(t) {
  return t >= 1000 ? `${(t / 1000).toFixed(2)} s` : `${Math.round(t)} ms`;
}
