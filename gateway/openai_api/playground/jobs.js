// Jobs panel: the Batch API. A JSONL file of requests is uploaded (/v1/files, purpose batch)
// and run by the gateway's batch runner (/v1/batches). The list shows each batch, newest
// first: its status, a progress bar from request_counts, its output and error files to
// download and Cancel while it is validating or in progress; it is refreshed every few seconds
// while the panel is open and a batch is unfinished.

import { ApiError, call, getJSON, postJSON, showError } from "./api.js";

const $ = (id) => document.getElementById(id);
const PAGE = 10;
const PERIOD_MS = 2000;
const FINISHED = new Set(["completed", "failed", "expired", "cancelled"]);
const CANCELLABLE = new Set(["validating", "in_progress"]);
const ENDED = ["completed_at", "failed_at", "expired_at", "cancelled_at"];

const asApiError = (err) =>
  err instanceof ApiError ? err : new ApiError(String(err.message || err));
const words = (status) => status.replace(/_/g, " ");

// The `url` of the first request line, or null when it is not a JSON object with one.
export function firstUrl(text) {
  const row = text.split("\n").find((r) => r.trim());
  if (!row) return null;
  try {
    const url = JSON.parse(row)?.url;
    return typeof url === "string" ? url : null;
  } catch {
    return null;
  }
}

function clock(seconds) {
  const d = new Date(seconds * 1000);
  const today = d.toDateString() === new Date().toDateString();
  return today ? d.toLocaleTimeString() : d.toLocaleString();
}

export function duration(seconds) {
  if (seconds < 60) return `${seconds} s`;
  const m = Math.floor(seconds / 60);
  if (m < 60) return `${m} min ${seconds % 60} s`;
  return `${Math.floor(m / 60)} h ${m % 60} min`;
}

function el(tag, className = "", text = "") {
  const e = document.createElement(tag);
  if (className) e.className = className;
  if (text) e.textContent = text;
  return e;
}

// What request_counts say, in words (also the progress bar's aria-valuetext).
export function countsText(b) {
  const { total = 0, completed = 0, failed = 0 } = b.request_counts || {};
  if (!total) return b.status === "validating" ? "reading the input file" : "no requests";
  const failures = failed ? ` · ${failed} failed` : "";
  return `${completed + failed} of ${total} done${failures}`;
}

export function initJobs(isOpen) {
  const form = $("jobs-form");
  const fileInput = $("jobs-file");
  const textBox = $("jobs-text");
  const endpointInput = $("jobs-endpoint");
  const status = $("jobs-status");
  const error = $("jobs-error");
  const list = $("jobs-list");
  const empty = $("jobs-empty");
  const moreButton = $("jobs-more");
  const rows = new Map(); // batch id -> {batch, li}
  let loaded = false; // the first page came
  let hasMore = false;
  let busy = false;
  let submitting = false;
  let timer = null;
  let wasOpen = false;
  let listError = false; // the error shown is a refresh's (the next good one clears it)

  // ---- one batch, one list item (built once, updated in place: focus stays where it is) ----
  function build(id) {
    const li = el("li", "batch");
    li.dataset.id = id;
    li.tabIndex = -1; // focus goes here when the button that had it goes away
    const head = el("div", "batch-head");
    head.id = `jobs-${id}`;
    head.append(el("code", "batch-id", id), " ", el("span", "batch-status"), " ");
    head.append(el("span", "batch-name"));
    const bar = el("div", "bar");
    bar.setAttribute("role", "progressbar");
    bar.setAttribute("aria-label", `progress of ${id}`);
    bar.setAttribute("aria-valuemin", "0");
    bar.append(el("span", "bar-ok"), el("span", "bar-failed"));
    const meta = el("div", "batch-meta");
    meta.append(el("span", "counts"), el("code", "endpoint"));
    meta.append(el("span", "created"), el("span", "took"));
    const errors = el("ul", "batch-errors error");
    errors.hidden = true;
    const actions = el("div", "batch-actions");
    const output = el("button", "output", "Download output");
    const errorFile = el("button", "errors", "Download errors");
    const cancelButton = el("button", "cancel", "Cancel");
    for (const b of [output, errorFile, cancelButton]) {
      b.type = "button";
      b.setAttribute("aria-describedby", head.id);
    }
    output.addEventListener("click", () => {
      const { batch } = rows.get(id);
      download(batch.output_file_id, `${id}_output.jsonl`, output);
    });
    errorFile.addEventListener("click", () => {
      const { batch } = rows.get(id);
      download(batch.error_file_id, `${id}_errors.jsonl`, errorFile);
    });
    cancelButton.addEventListener("click", () => cancel(id, cancelButton));
    actions.append(output, errorFile, cancelButton);
    li.append(head, bar, meta, errors, actions);
    return li;
  }

  function update(li, b) {
    const q = (sel) => li.querySelector(sel);
    li.dataset.status = b.status;
    const badge = q(".batch-status");
    badge.textContent = words(b.status);
    badge.className = `batch-status status-${b.status}`;
    q(".batch-name").textContent = b.metadata?.description || "";

    const { total = 0, completed = 0, failed = 0 } = b.request_counts || {};
    const bar = q(".bar");
    const text = countsText(b);
    bar.setAttribute("aria-valuemax", String(total));
    bar.setAttribute("aria-valuetext", text);
    const known = total || FINISHED.has(b.status); // validating: the total is not known yet
    if (known) bar.setAttribute("aria-valuenow", String(completed + failed));
    else bar.removeAttribute("aria-valuenow");
    bar.classList.toggle("waiting", !known);
    q(".bar-ok").style.width = total ? `${(100 * completed) / total}%` : "0";
    q(".bar-failed").style.width = total ? `${(100 * failed) / total}%` : "0";
    q(".counts").textContent = text;
    q(".endpoint").textContent = b.endpoint;
    const created = q(".created");
    created.textContent = `created ${clock(b.created_at)}`;
    created.title = new Date(b.created_at * 1000).toISOString();
    const end = ENDED.map((k) => b[k]).find(Boolean);
    q(".took").textContent = end ? `${words(b.status)} after ${duration(end - b.created_at)}` : "";

    const problems = b.errors?.data || [];
    const errors = q(".batch-errors");
    errors.replaceChildren(
      ...problems.map((p) => {
        const item = el("li");
        const detail = [p.code, p.line ? `line ${p.line}` : "", p.param ? `param: ${p.param}` : ""];
        item.append(el("span", "msg", p.message || p.code));
        item.append(el("span", "detail", detail.filter(Boolean).join(" · ")));
        return item;
      }),
    );
    errors.hidden = !problems.length;

    const shown = {
      ".output": Boolean(b.output_file_id),
      ".errors": Boolean(b.error_file_id),
      ".cancel": CANCELLABLE.has(b.status),
    };
    for (const [sel, visible] of Object.entries(shown)) {
      const button = q(sel);
      if (!visible && button.contains(document.activeElement)) li.focus();
      button.hidden = !visible;
    }
  }

  // Shows `b` (a new one after `after`, an element of the list; null: first). Returns its li.
  function put(b, after = null) {
    const known = rows.get(b.id);
    if (known) {
      const was = known.batch.status;
      known.batch = b;
      update(known.li, b);
      if (was !== b.status && FINISHED.has(b.status)) {
        status.textContent = `${b.id} ${words(b.status)}: ${countsText(b)}`;
      }
      return known.li;
    }
    const li = build(b.id);
    rows.set(b.id, { batch: b, li });
    update(li, b);
    if (after) after.after(li);
    else list.prepend(li);
    return li;
  }

  // Batches in the API's order (newest first): new ones go after the one before them.
  function merge(batches, after) {
    let prev = after;
    let first = null;
    for (const b of batches) {
      const isNew = !rows.has(b.id);
      prev = put(b, prev);
      if (isNew) first ??= prev;
    }
    return first;
  }

  function showListState() {
    empty.hidden = !loaded || rows.size > 0;
    moreButton.hidden = !hasMore;
  }

  const unfinished = () => [...rows.values()].some((r) => !FINISHED.has(r.batch.status));

  async function refresh() {
    if (busy) return;
    busy = true;
    clearTimeout(timer);
    timer = null;
    try {
      const page = await getJSON(`/v1/batches?limit=${PAGE}`);
      merge(page.data, null);
      if (!loaded) hasMore = page.has_more;
      loaded = true;
      // unfinished batches further down the list than the first page
      const seen = new Set(page.data.map((b) => b.id));
      const rest = [...rows.values()]
        .map((r) => r.batch)
        .filter((b) => !seen.has(b.id) && !FINISHED.has(b.status));
      const again = await Promise.all(
        rest.map((b) => getJSON(`/v1/batches/${encodeURIComponent(b.id)}`)),
      );
      for (const b of again) put(b);
      if (listError) showError(error, null);
      listError = false;
      list.dataset.updates = String(Number(list.dataset.updates || 0) + 1);
    } catch (err) {
      showError(error, asApiError(err));
      listError = true;
    } finally {
      busy = false;
      showListState();
      schedule();
    }
  }

  async function more() {
    if (busy) return;
    busy = true;
    try {
      const last = list.lastElementChild;
      const after = last ? `&after=${encodeURIComponent(last.dataset.id)}` : "";
      const page = await getJSON(`/v1/batches?limit=${PAGE}${after}`);
      const first = merge(page.data, last);
      hasMore = page.has_more && page.data.length > 0;
      if (first) first.focus(); // the More button may go: keep the keyboard in the list
    } catch (err) {
      showError(error, asApiError(err));
    } finally {
      busy = false;
      showListState();
      schedule();
    }
  }

  function schedule() {
    const open = isOpen() && !document.hidden;
    if (!open) {
      clearTimeout(timer);
      timer = null;
      wasOpen = false;
      return;
    }
    if (!wasOpen) {
      wasOpen = true;
      refresh(); // on opening: at once (it schedules the next itself)
      return;
    }
    if (!timer && !busy && unfinished()) timer = setTimeout(refresh, PERIOD_MS);
  }

  // ---- the files: fetched with the key, saved through a Blob URL ---------------------------
  async function download(fileId, name, button) {
    if (button.getAttribute("aria-busy") === "true") return;
    button.setAttribute("aria-busy", "true");
    showError(error, null);
    try {
      const response = await call(`/v1/files/${encodeURIComponent(fileId)}/content`);
      const blob = new Blob([await response.blob()], { type: "application/jsonl" });
      const url = URL.createObjectURL(blob);
      const a = document.createElement("a");
      a.href = url;
      a.download = name;
      a.hidden = true;
      document.body.append(a);
      a.click();
      a.remove();
      setTimeout(() => URL.revokeObjectURL(url), 60_000);
      status.textContent = `${name}: ${blob.size} bytes saved`;
    } catch (err) {
      showError(error, asApiError(err));
    } finally {
      button.removeAttribute("aria-busy");
    }
  }

  async function cancel(id, button) {
    if (button.getAttribute("aria-busy") === "true") return;
    button.setAttribute("aria-busy", "true");
    showError(error, null);
    try {
      put(await postJSON(`/v1/batches/${encodeURIComponent(id)}/cancel`));
      status.textContent = `${id}: cancelling (requests running now finish, the rest do not run)`;
    } catch (err) {
      showError(error, asApiError(err));
    } finally {
      button.removeAttribute("aria-busy");
      schedule();
    }
  }

  // ---- a new batch: upload, then create ----------------------------------------------------
  function presetEndpoint(text) {
    const url = firstUrl(text);
    if (url) {
      endpointInput.value = url;
      endpointInput.removeAttribute("aria-invalid");
    }
  }

  fileInput.addEventListener("change", async () => {
    fileInput.removeAttribute("aria-invalid");
    const file = fileInput.files[0];
    if (file) presetEndpoint(await file.slice(0, 65536).text());
  });
  textBox.addEventListener("input", () => {
    textBox.removeAttribute("aria-invalid");
    if (!fileInput.files.length) presetEndpoint(textBox.value);
  });
  endpointInput.addEventListener("input", () => endpointInput.removeAttribute("aria-invalid"));

  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    if (submitting) return;
    showError(error, null);
    listError = false;
    for (const box of [fileInput, textBox, endpointInput]) box.removeAttribute("aria-invalid");
    const file = fileInput.files[0];
    const text = textBox.value;
    if (!file && !text.trim()) {
      showError(error, new ApiError("Choose a .jsonl file or paste its lines first."));
      textBox.setAttribute("aria-invalid", "true");
      return;
    }
    const name = file ? file.name : "pasted.jsonl";
    const lines = text.endsWith("\n") ? text : `${text}\n`;
    const body = file ?? new Blob([lines], { type: "application/jsonl" });
    const endpoint = endpointInput.value.trim();
    const data = new FormData();
    data.append("purpose", "batch");
    data.append("file", body, name);
    submitting = true;
    form.setAttribute("aria-busy", "true");
    status.textContent = `uploading ${name} (${body.size} bytes)…`;
    let upload = null;
    try {
      upload = await (await call("/v1/files", { method: "POST", body: data })).json();
      status.textContent = `${name} is ${upload.id}; creating the batch…`;
      const batch = await postJSON("/v1/batches", {
        input_file_id: upload.id,
        endpoint,
        completion_window: "24h",
        metadata: { description: name },
      });
      upload = null;
      put(batch);
      showListState();
      status.textContent = `${batch.id} submitted: ${name} to ${endpoint}`;
      fileInput.value = "";
      textBox.value = "";
    } catch (err) {
      status.textContent = "";
      const refused = asApiError(err);
      showError(error, refused);
      // mark the box the API names
      const source = file ? fileInput : textBox;
      const named = { endpoint: endpointInput, file: source, input_file_id: source }[refused.param];
      named?.setAttribute("aria-invalid", "true");
      if (upload) {
        // the batch was refused: its upload is of no use
        call(`/v1/files/${encodeURIComponent(upload.id)}`, { method: "DELETE" }).catch(() => {});
      }
    } finally {
      submitting = false;
      form.removeAttribute("aria-busy");
      schedule();
    }
  });

  $("jobs-refresh").addEventListener("click", refresh);
  moreButton.addEventListener("click", more);
  document.addEventListener("visibilitychange", schedule);
  return { schedule, refresh };
}
