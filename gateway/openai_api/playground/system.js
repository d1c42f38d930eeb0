// System panel: every model's state, replicas and engine (/v1/models) beside live figures
// from the gateway's /metrics, refreshed every few seconds while the panel is open.

import { ApiError, call, listModels, showError } from "./api.js";
import { buckets, minus, parse, quantile, sum } from "./prom.js";
import { ms } from "./chat.js";

const $ = (id) => document.getElementById(id);
const PERIOD_MS = 3000;
const WINDOW_MS = 60000; // rates and TTFT p50 over the last minute
const FIRST_CHUNK = { text: "aigc_time_to_first_token_seconds", audio: "aigc_time_to_first_audio_seconds" };
const REQUESTS = "aigc_requests_total";
const QUIET = new Set(["OK", "CANCELLED", "RESOURCE_EXHAUSTED"]);

export function initSystem(onModels, isOpen) {
  const status = $("system-status");
  const error = $("system-error");
  const tbody = document.querySelector("#system-models tbody");
  let history = []; // [{t, samples}], oldest first, spanning about WINDOW_MS
  let timer = null;
  let busy = false;

  function cell(col, text, title = "", cls = "") {
    const td = document.createElement("td");
    td.dataset.col = col;
    td.textContent = text;
    if (title) td.title = title;
    if (cls) td.className = cls;
    return td;
  }

  function ttft(model, now, then) {
    const name = FIRST_CHUNK[model.modality];
    if (!name) return cell("ttft", "–");
    const all = buckets(now, name, { model: model.id });
    if (then) {
      const recent = minus(all, buckets(then, name, { model: model.id }));
      const p50 = quantile(0.5, recent);
      if (p50 !== null) return cell("ttft", ms(p50 * 1000), "last minute");
    }
    const p50 = quantile(0.5, all);
    if (p50 === null) return cell("ttft", "–");
    return cell("ttft", ms(p50 * 1000), "since the gateway started", "since-start");
  }

  function render(models, samples, t) {
    const base = history.length && t - history[0].t > 0 ? history[0] : null;
    const rows = models.map((m) => {
      const tr = document.createElement("tr");
      tr.dataset.model = m.id;
      const of = { model: m.id };
      const total = sum(samples, REQUESTS, of);
      let rate = "–";
      if (base) {
        const per = (total - sum(base.samples, REQUESTS, of)) / ((t - base.t) / 1000);
        rate = per.toFixed(per >= 10 ? 0 : 2);
      }
      const r = m.replicas || {};
      const replicas =
        r.running === undefined ? "?" : `${r.running}${r.starting ? ` (+${r.starting} starting)` : ""}`;
      const state = cell("state", m.state || (m.ready ? "ready" : "not ready"));
      state.className = `state-${m.state || "unknown"}`;
      tr.append(
        cell("model", m.id, [m.description, m.aliases.length ? `aliases: ${m.aliases.join(", ")}` : ""].filter(Boolean).join("\n")),
        cell("modality", m.modality),
        state,
        cell("replicas", replicas, r.min !== undefined ? `autoscaling ${r.min}–${r.max}` : ""),
        cell("engine", m.engine || "?"),
        cell("requests", String(total)),
        cell("rate", rate),
        ttft(m, samples, base?.samples),
        cell("inflight", String(sum(samples, "aigc_inflight_requests", of))),
        cell("queued", String(sum(samples, "aigc_admission_queued_requests", of))),
        cell("refused", String(sum(samples, REQUESTS, { ...of, code: "RESOURCE_EXHAUSTED" }))),
        cell("errors", String(sum(samples, REQUESTS, { ...of, code: (c) => !QUIET.has(c) }))),
      );
      return tr;
    });
    tbody.replaceChildren(...rows);
    const ready = models.filter((m) => m.state === "ready" || m.ready).length;
    const when = new Date().toLocaleTimeString();
    status.textContent =
      `${ready} of ${models.length} models ready · updated ${when} · every ${PERIOD_MS / 1000} s`;
    status.dataset.updates = String(Number(status.dataset.updates || 0) + 1);
  }

  async function refresh() {
    if (busy) return;
    busy = true;
    try {
      const [models, text] = await Promise.all([
        listModels(),
        call("/metrics").then((r) => r.text()),
      ]);
      const samples = parse(text);
      const t = performance.now();
      onModels(models);
      history = history.filter((h) => t - h.t <= WINDOW_MS);
      render(models, samples, t);
      history.push({ t, samples });
      showError(error, null);
    } catch (err) {
      showError(error, err instanceof ApiError ? err : new ApiError(String(err.message || err)));
    } finally {
      busy = false;
    }
  }

  function schedule() {
    const open = isOpen() && !document.hidden;
    if (open && !timer) {
      refresh();
      timer = setInterval(refresh, PERIOD_MS);
    } else if (!open && timer) {
      clearInterval(timer);
      timer = null;
    }
  }
  document.addEventListener("visibilitychange", schedule);
  return { schedule, refresh };
}
