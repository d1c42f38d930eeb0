// One answer of the Chat panel as it streams: its text (each token its own span when token
// probabilities were asked), its tool calls shown as calls, and the popover that tells a
// token's probability and its alternatives on hover or keyboard focus.

// A token's entries (OpenAI's chat logprobs shape) by its span.
const entriesOf = new WeakMap();

// exp(logprob) as a percentage.
export function pct(logprob) {
  const p = Math.exp(logprob) * 100;
  return p >= 0.01 ? `${p.toFixed(p >= 10 ? 1 : 2)}%` : "<0.01%";
}

// A token as text you can see (quoted, with its spaces and line breaks escaped).
function shown(token) {
  return JSON.stringify(token);
}

// The legacy completions logprobs ({tokens, token_logprobs, top_logprobs}) as chat entries.
export function completionEntries(lp) {
  if (!lp?.tokens) return null;
  return lp.tokens.map((token, i) => ({
    token,
    logprob: lp.token_logprobs[i],
    top_logprobs: Object.entries(lp.top_logprobs?.[i] || {})
      .map(([t, logprob]) => ({ token: t, logprob }))
      .sort((a, b) => b.logprob - a.logprob),
  }));
}

// The arguments of a call pretty-printed once they parse, else as they came (still streaming).
function pretty(args) {
  try {
    return JSON.stringify(JSON.parse(args), null, 2);
  } catch {
    return args;
  }
}

export class Answer {
  constructor(msgEl) {
    this.msgEl = msgEl;
    this.textEl = msgEl.querySelector(".text");
    this.content = "";
    this.calls = new Map(); // index -> {id, name, arguments, el}
  }

  // A delta of the answer's text, with its tokens' entries when logprobs were asked. Entries
  // without text (the JSON a tool call was decoded from) are not shown.
  text(delta, entries) {
    if (!delta) return;
    this.content += delta;
    if (!entries?.length) {
      this.textEl.append(delta);
    } else if (entries.map((e) => e.token).join("") === delta) {
      for (const e of entries) this.textEl.append(this.token(e.token, [e]));
    } else {
      this.textEl.append(this.token(delta, entries)); // one span for the delta, its tokens listed
    }
  }

  token(text, entries) {
    const span = document.createElement("span");
    span.className = "tok";
    span.textContent = text;
    // one tab stop per answer: the arrow keys move between its tokens
    span.tabIndex = this.textEl.querySelector(".tok") ? -1 : 0;
    const logprob = entries.reduce((sum, e) => sum + e.logprob, 0);
    span.dataset.logprob = String(logprob);
    span.style.setProperty("--p", String(Math.exp(logprob)));
    entriesOf.set(span, entries);
    return span;
  }

  // Streamed tool call pieces: the first of a call names it, the arguments come in pieces.
  toolCalls(deltas) {
    for (const d of deltas) {
      let call = this.calls.get(d.index);
      if (!call) {
        call = { id: "", name: "", arguments: "", el: callBlock() };
        this.calls.set(d.index, call);
        let list = this.msgEl.querySelector(".calls");
        if (!list) {
          list = document.createElement("div");
          list.className = "calls";
          this.msgEl.append(list);
        }
        list.append(call.el);
      }
      if (d.id) call.id = d.id;
      call.name += d.function?.name || "";
      call.arguments += d.function?.arguments || "";
      const { el } = call;
      el.dataset.id = call.id;
      el.setAttribute("aria-label", `tool call ${call.name}`);
      el.querySelector(".call-name").textContent = call.name;
      el.querySelector(".call-args").textContent = pretty(call.arguments);
    }
  }

  // The calls as an assistant message carries them back in the history.
  get toolCallList() {
    return [...this.calls.values()].map((c) => ({
      id: c.id,
      type: "function",
      function: { name: c.name, arguments: c.arguments },
    }));
  }
}

function callBlock() {
  const el = document.createElement("div");
  el.className = "call";
  el.setAttribute("role", "group");
  const head = document.createElement("div");
  head.className = "call-head";
  const label = document.createElement("span");
  label.className = "call-label";
  label.textContent = "tool call";
  const name = document.createElement("code");
  name.className = "call-name";
  head.append(label, " ", name);
  const args = document.createElement("pre");
  args.className = "call-args";
  el.append(head, args);
  return el;
}

function tipContent(entries) {
  const parts = [];
  for (const e of entries) {
    const head = document.createElement("div");
    head.className = "tip-head";
    const token = document.createElement("code");
    token.textContent = shown(e.token);
    const p = document.createElement("strong");
    p.className = "tip-p";
    p.textContent = pct(e.logprob);
    head.append(token, " ", p);
    parts.push(head);
    if (e.top_logprobs?.length) {
      const title = document.createElement("div");
      title.className = "tip-title";
      title.textContent = "alternatives:";
      const list = document.createElement("ol");
      list.className = "tip-alts";
      for (const t of e.top_logprobs) {
        const li = document.createElement("li");
        if (t.token === e.token) li.className = "chosen";
        const code = document.createElement("code");
        code.textContent = shown(t.token);
        const q = document.createElement("span");
        q.className = "tip-p";
        q.textContent = pct(t.logprob);
        li.append(code, " ", q);
        list.append(li);
      }
      parts.push(title, list);
    }
  }
  return parts;
}

// The popover for the token spans in `log`: shown on hover and on focus (described by it),
// Escape hides it, the arrow keys (and Home, End) move between one answer's tokens.
export function initTokenTips(log, tip) {
  let current = null;

  function place() {
    if (!current) return;
    const r = current.getBoundingClientRect();
    const left = Math.max(4, Math.min(r.left, window.innerWidth - tip.offsetWidth - 8));
    const below = r.bottom + 4;
    const top =
      below + tip.offsetHeight > window.innerHeight ? r.top - tip.offsetHeight - 4 : below;
    tip.style.left = `${left}px`;
    tip.style.top = `${Math.max(4, top)}px`;
  }

  function show(tok) {
    const entries = entriesOf.get(tok);
    if (!entries) return;
    if (current && current !== tok) current.removeAttribute("aria-describedby");
    current = tok;
    tip.replaceChildren(...tipContent(entries));
    tip.hidden = false;
    tok.setAttribute("aria-describedby", tip.id);
    place();
  }

  function hide() {
    current?.removeAttribute("aria-describedby");
    current = null;
    tip.hidden = true;
  }

  // back to the focused token, if any, once the pointer leaves
  function settle(to) {
    if (to && (tip.contains(to) || to.closest?.(".tok"))) return;
    const focused = document.activeElement;
    if (focused?.classList.contains("tok") && log.contains(focused)) show(focused);
    else hide();
  }

  const tokenOf = (target) => target?.closest?.(".tok") ?? null;
  log.addEventListener("mouseover", (e) => {
    const tok = tokenOf(e.target);
    if (tok) show(tok);
  });
  log.addEventListener("mouseout", (e) => {
    if (tokenOf(e.target)) settle(e.relatedTarget);
  });
  tip.addEventListener("mouseleave", (e) => settle(e.relatedTarget)); // the popover is hoverable
  log.addEventListener("focusin", (e) => {
    const tok = tokenOf(e.target);
    if (tok) show(tok);
  });
  log.addEventListener("focusout", (e) => {
    if (tokenOf(e.target) && !tokenOf(e.relatedTarget)) hide();
  });
  log.addEventListener("keydown", (e) => {
    const tok = tokenOf(e.target);
    if (!tok) return;
    if (e.key === "Escape") {
      hide();
      return;
    }
    const all = [...tok.parentElement.querySelectorAll(".tok")];
    const i = all.indexOf(tok);
    const to = { ArrowRight: i + 1, ArrowLeft: i - 1, Home: 0, End: all.length - 1 }[e.key];
    if (to === undefined || !all[to]) return;
    e.preventDefault();
    tok.tabIndex = -1;
    all[to].tabIndex = 0;
    all[to].focus();
  });
  log.addEventListener("scroll", place);
  window.addEventListener("scroll", place, { passive: true });
  return hide;
}
