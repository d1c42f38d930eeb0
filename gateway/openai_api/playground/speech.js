// Speech panel: /v1/audio/speech as a WAV stream. Each chunk of PCM is played (Web Audio) as
// soon as it arrives; when the stream ends the whole WAV goes into the <audio> player.

import { ApiError, call, numberOrNull, showError } from "./api.js";
import { ms } from "./chat.js";

const $ = (id) => document.getElementById(id);

// The WAV header of a stream: sample rate, channels, bits and where the PCM starts (or null
// while the header has not fully arrived).
export function parseWavHeader(bytes) {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const tag = (at) => String.fromCharCode(...bytes.subarray(at, at + 4));
  if (bytes.length < 12) return null;
  if (tag(0) !== "RIFF" || tag(8) !== "WAVE") throw new ApiError("the response is not a WAV file");
  let at = 12;
  let format = null;
  while (at + 8 <= bytes.length) {
    const id = tag(at);
    const size = view.getUint32(at + 4, true);
    if (id === "data") {
      if (!format) throw new ApiError("WAV data came before its format");
      return { ...format, dataStart: at + 8 };
    }
    if (at + 8 + size > bytes.length) return null;
    if (id === "fmt ") {
      format = {
        channels: view.getUint16(at + 10, true),
        sampleRate: view.getUint32(at + 12, true),
        bits: view.getUint16(at + 22, true),
      };
    }
    at += 8 + size + (size % 2);
  }
  return null;
}

export function wavFile(pcm, sampleRate) {
  const header = new DataView(new ArrayBuffer(44));
  const text = (at, s) => [...s].forEach((c, i) => header.setUint8(at + i, c.charCodeAt(0)));
  text(0, "RIFF");
  header.setUint32(4, 36 + pcm.length, true);
  text(8, "WAVE");
  text(12, "fmt ");
  header.setUint32(16, 16, true);
  header.setUint16(20, 1, true); // PCM
  header.setUint16(22, 1, true); // mono
  header.setUint32(24, sampleRate, true);
  header.setUint32(28, sampleRate * 2, true);
  header.setUint16(32, 2, true);
  header.setUint16(34, 16, true);
  text(36, "data");
  header.setUint32(40, pcm.length, true);
  return new Blob([header, pcm], { type: "audio/wav" });
}

function concat(parts) {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

export function initSpeech(getModels) {
  const modelSelect = $("speech-model");
  const voiceSelect = $("speech-voice");
  const status = $("speech-status");
  const error = $("speech-error");
  const audio = $("speech-audio");
  const speak = $("speech-speak");
  const stop = $("speech-stop");
  let context = null; // one AudioContext, made on the first click (browsers want a gesture)
  let controller = null;
  let sources = [];
  let objectUrl = null;

  function refreshVoices() {
    const m = getModels().find((x) => x.id === modelSelect.value);
    const voices = m?.voices || [];
    voiceSelect.replaceChildren(new Option("default", ""), ...voices.map((v) => new Option(v, v)));
    $("speech-voice-field").hidden = voices.length === 0;
  }
  modelSelect.addEventListener("change", refreshVoices);

  stop.addEventListener("click", () => {
    controller?.abort();
    for (const s of sources) s.stop();
    sources = [];
  });

  // Plays one chunk of s16le mono after what is already scheduled.
  function play(pcm, sampleRate, state) {
    const n = pcm.length / 2;
    const view = new DataView(pcm.buffer, pcm.byteOffset, pcm.byteLength);
    const buffer = context.createBuffer(1, n, sampleRate);
    const channel = buffer.getChannelData(0);
    for (let i = 0; i < n; i++) channel[i] = view.getInt16(2 * i, true) / 32768;
    const source = context.createBufferSource();
    source.buffer = buffer;
    source.connect(context.destination);
    const at = Math.max(context.currentTime + 0.05, state.next);
    source.start(at);
    state.next = at + buffer.duration;
    source.onended = () => {
      sources = sources.filter((x) => x !== source);
    };
    sources.push(source);
  }

  $("speech-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    if (controller) return;
    context ??= new AudioContext();
    context.resume().catch(() => {});
    const body = {
      model: modelSelect.value,
      input: $("speech-input").value,
      voice: voiceSelect.value,
      speed: numberOrNull($("speech-speed")) ?? 1,
      response_format: "wav",
    };
    showError(error, null);
    controller = new AbortController();
    speak.disabled = true;
    stop.disabled = false;
    audio.dataset.state = "waiting";
    status.textContent = `${body.model}: synthesizing…`;
    const started = performance.now();
    const state = { next: 0 };
    let header = null;
    let head = new Uint8Array(0); // bytes before the PCM starts, until the header is complete
    let carry = null; // an odd byte split between chunks
    const pcmParts = [];
    let pcmBytes = 0;
    let chunks = 0;
    let first = null;
    try {
      const response = await call("/v1/audio/speech", {
        method: "POST",
        body,
        signal: controller.signal,
      });
      audio.dataset.state = "streaming";
      const reader = response.body.getReader();
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        let bytes = value;
        if (!header) {
          head = concat([head, bytes]);
          header = parseWavHeader(head);
          if (!header) continue;
          if (header.bits !== 16 || header.channels !== 1) {
            throw new ApiError(`unexpected WAV format: ${header.bits} bits, ${header.channels} channels`);
          }
          bytes = head.subarray(header.dataStart);
        }
        if (carry) {
          bytes = concat([carry, bytes]);
          carry = null;
        }
        if (bytes.length % 2) {
          carry = bytes.slice(bytes.length - 1);
          bytes = bytes.subarray(0, bytes.length - 1);
        }
        if (!bytes.length) continue;
        const pcm = bytes.slice();
        pcmParts.push(pcm);
        pcmBytes += pcm.length;
        chunks += 1;
        first ??= performance.now() - started;
        play(pcm, header.sampleRate, state);
        audio.dataset.chunks = String(chunks);
        const secs = pcmBytes / 2 / header.sampleRate;
        status.textContent =
          `${body.model}: playing as it streams · ${secs.toFixed(1)} s of audio so far · ` +
          `first audio after ${ms(first)}`;
      }
      if (!header) throw new ApiError("the stream ended before any audio");
      const seconds = pcmBytes / 2 / header.sampleRate;
      if (objectUrl) URL.revokeObjectURL(objectUrl);
      objectUrl = URL.createObjectURL(wavFile(concat(pcmParts), header.sampleRate));
      audio.src = objectUrl;
      audio.dataset.seconds = seconds.toFixed(3);
      audio.dataset.sampleRate = String(header.sampleRate);
      audio.dataset.state = "done";
      status.textContent =
        `${body.model}: ${seconds.toFixed(2)} s of audio at ${header.sampleRate} Hz in ${chunks} ` +
        `chunks · first audio after ${ms(first)} · played as it streamed; replay below`;
    } catch (err) {
      if (err.name === "AbortError") {
        audio.dataset.state = "stopped";
        status.textContent = `${body.model}: stopped`;
      } else {
        audio.dataset.state = "error";
        status.textContent = "";
        showError(error, err instanceof ApiError ? err : new ApiError(String(err.message || err)));
      }
    } finally {
      controller = null;
      speak.disabled = false;
      stop.disabled = true;
    }
  });

  return refreshVoices;
}
