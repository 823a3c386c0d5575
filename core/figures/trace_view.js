// Trace view: a divergence strip over highlighted tokens, and (when the data carries `topk`)
// the clicked token's top-k panel, optionally both models' probability and rank lanes under
// the tokens and (one view per page) keyboard moves. Every token string is set with textContent, never
// innerHTML, so hostile text stays text. Clicks go back through `setTriggerValue("clicked",
// position)`, n / p keys through `setTriggerValue("trace_step", +1 / -1)`. One file for both hosts: the Streamlit component (custom components v2) loads
// it as is; the notebook widget (shiftlens.front) drops the final default export
// and calls draw() from its anywidget render(). The data is built by core.figures.trace.
function visible(tok, marksOnly) {
  // keep whitespace faithful but visible: a mark before newlines and tabs (with lanes, the
  // mark alone: a token's column stays one line high and the break follows the column)
  const parts = [];
  for (const ch of tok) {
    if (ch === "\n") parts.push(["\u21b5", true], ...(marksOnly ? [] : [["\n", false]]));
    else if (ch === "\t") parts.push(["\u2192", true], ...(marksOnly ? [] : [["\t", false]]));
    else parts.push([ch, false]);
  }
  return parts;
}

function rankText(r) {
  return r === null || r === undefined ? "\u2013" : r > 99 ? "99+" : String(r);
}

function isDark(el) {
  // the theme's page colour, as Streamlit exposes it to components (#RRGGBB or rgb(...))
  const v = getComputedStyle(el).getPropertyValue("--st-background-color").trim();
  let rgb = null;
  if (/^#[0-9a-f]{6}$/i.test(v)) rgb = [1, 3, 5].map((i) => parseInt(v.slice(i, i + 2), 16));
  else if (v.startsWith("rgb")) rgb = v.slice(v.indexOf("(") + 1, -1).split(",").map(Number);
  return !!rgb && 0.2126 * rgb[0] + 0.7152 * rgb[1] + 0.0722 * rgb[2] < 128;
}

function draw(component) {
  const { data, parentElement, setTriggerValue } = component;
  const started = performance.now();
  let root = parentElement.querySelector(".sl-root");
  if (!root) {
    root = document.createElement("div");
    root.className = "sl-root";
    parentElement.appendChild(root);
  }
  root.replaceChildren();
  const n = data.tokens.length;
  // the host's theme when it says (the app's per-session switch), else the page's colour
  // (root: an element; parentElement may be a shadow root)
  const dark = data.theme ? data.theme === "dark" : isDark(root);
  const colours = (dark && data.colours_dark) || data.colours;
  const textColours = (dark ? data.text_dark : data.text) || [];
  root.dataset.theme = dark ? "dark" : "light";  // read by the browser tests

  const strip = document.createElement("div");
  strip.className = "sl-strip";
  strip.setAttribute("data-testid", "divergence-strip");
  const buckets = Math.max(1, Math.min(n, data.strip_buckets || 400));
  for (let b = 0; b < buckets; b++) {
    const lo = Math.floor((b * n) / buckets), hi = Math.max(lo + 1, Math.floor(((b + 1) * n) / buckets));
    let best = lo;
    for (let i = lo; i < hi && i < n; i++) if (data.strength[i] > data.strength[best]) best = i;
    const cell = document.createElement("div");
    cell.style.background = colours[best] || "transparent";
    cell.title = `pos ${best}`;
    cell.onclick = () => setTriggerValue("clicked", best);
    strip.appendChild(cell);
  }
  root.appendChild(strip);

  const lanes = data.lanes || null;
  if (lanes) {
    root.appendChild(el("div", "sl-lane-key",
      "Lanes under each token: base model, then tuned model \u00b7 bar: the probability the " +
      "model gave the token \u00b7 number: its rank (1 = the model's first choice)"));
  }
  const text = document.createElement("div");
  text.className = lanes ? "sl-text sl-lanes" : "sl-text";
  text.setAttribute("data-testid", "trace-text");
  const folds = new Map((data.folds || []).map(([a, b]) => [a, b]));
  // folds expanded in this view stay expanded across reruns (the root outlives them)
  const opened = new Set(JSON.parse(root.dataset.opened || "[]"));
  const foldKey = (a, b) => `${n}:${a}-${b}`;
  let selectedEl = null;
  const frag = document.createDocumentFragment();
  for (let i = 0; i < n; i++) {
    if (folds.has(i) && !opened.has(foldKey(i, folds.get(i)))) {
      const end = folds.get(i);
      const fold = document.createElement("span");
      fold.className = "sl-fold";
      fold.textContent = `\u2026 ${end - i} low-divergence tokens \u2026`;
      const start = i;
      fold.onclick = () => {
        const sub = document.createDocumentFragment();
        for (let j = start; j < end; j++) sub.appendChild(tokenEl(j));
        fold.replaceWith(sub);
        opened.add(foldKey(start, end));
        root.dataset.opened = JSON.stringify([...opened]);
      };
      frag.appendChild(fold);
      i = end - 1;
      continue;
    }
    frag.appendChild(tokenEl(i));
  }
  text.appendChild(frag);
  root.appendChild(text);
  if (data.topk) root.appendChild(topkPanel(data.topk[data.selected], data.selected));
  if (selectedEl && data.scroll) selectedEl.scrollIntoView({ block: "center" });
  if (data.keys) keyboard(root, data, setTriggerValue);
  root.dataset.renderMs = (performance.now() - started).toFixed(1);  // read by benchmarks

  function tokenEl(i) {
    // the token, or with lanes its column: the token over one cell per model
    const span = tokenSpan(i);
    if (!lanes) return span;
    const col = el("span", "sl-col");
    col.dataset.pos = String(i);
    col.appendChild(span);
    for (const who of ["base", "tuned"]) {
      const p = lanes[who].prob[i], r = lanes[who].rank[i];
      const cell = el("span", "sl-lane");
      cell.dataset.model = who;
      cell.dataset.pos = String(i);
      cell.title = `${who} model: p ${p === null ? "not stored" : p.toPrecision(3)} \u00b7 rank ${r === null ? "not stored" : r}`;
      const bar = el("span", "sl-lane-bar sl-lane-" + who);
      bar.style.height = `${Math.round(100 * Math.max(0, Math.min(1, p || 0)))}%`;
      cell.append(bar, el("span", "sl-lane-rank", rankText(r)));
      col.appendChild(cell);
    }
    if (data.tokens[i].includes("\n")) {
      const f = document.createDocumentFragment();
      f.append(col, el("span", "sl-break"));
      return f;
    }
    return col;
  }

  function tokenSpan(i) {
    const span = document.createElement("span");
    span.className = "sl-tok" + (data.special[i] ? " sl-special" : "") + (i === data.selected ? " sl-sel" : "") +
      (i === data.part ? " sl-part" : "");
    span.dataset.pos = String(i);
    span.style.background = colours[i] || "transparent";
    if (textColours[i]) span.style.color = textColours[i];
    span.title = data.titles[i];
    for (const [s, mark] of visible(data.tokens[i], !!lanes)) {
      if (mark) {
        const m = document.createElement("span");
        m.className = "sl-ws";
        m.textContent = s;
        span.appendChild(m);
      } else span.appendChild(document.createTextNode(s));
    }
    span.onclick = () => setTriggerValue("clicked", i);
    if (i === data.selected) selectedEl = span;
    return span;
  }
}

const KEYS_HINT = "Keys: j / k next / previous highlighted token \u00b7 Enter its top-k \u00b7 " +
  "n / p next / previous trace";

function keyboard(root, data, setTriggerValue) {
  // j/k move a cursor over the highlighted tokens (those above the threshold), Enter opens
  // the cursor's top-k (as a click), n/p ask the host for the next / previous trace. The
  // cursor lives in the component (root.dataset.cursor); the host keeps the rest in the URL.
  root.insertBefore(el("div", "sl-hint sl-keys", KEYS_HINT), root.firstChild);
  const divergent = [];
  for (let i = 0; i < data.tokens.length; i++) if (data.strength[i] > 0) divergent.push(i);
  root.dataset.cursor = String(data.selected);  // outlined as selected already
  root._slKeys = (e) => {
    const pos = Number(root.dataset.cursor);
    if (e.key === "j" || e.key === "k") {
      if (!divergent.length) return;
      const next = e.key === "j" ? divergent.find((i) => i > pos)
        : [...divergent].reverse().find((i) => pos < 0 || i < pos);
      root.dataset.cursor = String(next !== undefined ? next
        : e.key === "j" ? divergent[0] : divergent[divergent.length - 1]);
      mark(root);
    } else if (e.key === "Enter" && pos >= 0) setTriggerValue("clicked", pos);
    else if (e.key === "n" || e.key === "p") setTriggerValue("trace_step", e.key === "n" ? 1 : -1);
    else return;
    e.preventDefault();
  };
  if (root._slListening) return;  // one listener per view, reading the latest draw's state
  root._slListening = true;
  const onKey = (e) => {
    if (!root.isConnected) { document.removeEventListener("keydown", onKey); return; }
    const target = e.composedPath()[0];
    if (e.ctrlKey || e.metaKey || e.altKey || (target && (target.isContentEditable ||
        /^(INPUT|TEXTAREA|SELECT|BUTTON)$/.test(target.tagName)))) return;  // typing elsewhere
    root._slKeys(e);
  };
  document.addEventListener("keydown", onKey);
}

function mark(root) {
  for (const old of root.querySelectorAll(".sl-cur")) old.classList.remove("sl-cur");
  const cur = root.querySelector(`.sl-tok[data-pos="${root.dataset.cursor}"]`);
  if (cur) {
    cur.classList.add("sl-cur");
    cur.scrollIntoView({ block: "nearest" });
  }
}

function el(tag, className, text) {
  const e = document.createElement(tag);
  if (className) e.className = className;
  if (text !== undefined) e.textContent = text;
  return e;
}

function topkPanel(row, pos) {
  // both models' top-k side by side (rank, token, probability, the trace's token marked),
  // then the token's metrics: what the app's Python panel (app/ui/tokens.topk_panel) shows
  const panel = el("div", "sl-topk");
  panel.setAttribute("data-testid", "topk-panel");
  if (row === undefined || row === null) {
    panel.appendChild(el("div", "sl-hint", pos >= 0 ? "No top-k lists stored for this run."
      : "Click a token (or the strip) to see both models' top-k."));
    return panel;
  }
  panel.dataset.pos = String(pos);
  panel.appendChild(el("div", "sl-topk-head", `Token ${pos}: ${row.token}`));
  const sides = el("div", "sl-topk-sides");
  for (const who of ["base", "tuned"]) {
    const side = el("div", "sl-topk-side");
    side.dataset.model = who;
    side.appendChild(el("div", "sl-topk-title", `${who} model top-${row[who].length}`));
    const table = el("table");
    const head = el("tr");
    for (const h of ["rank", "token", "prob", "in trace"]) head.appendChild(el("th", "", h));
    table.appendChild(head);
    row[who].forEach(([tok, prob, mine], r) => {
      const tr = el("tr", mine ? "sl-mine" : "");
      tr.appendChild(el("td", "", String(r + 1)));
      tr.appendChild(el("td", "sl-topk-tok", tok));
      const cell = el("td", "sl-prob");
      const bar = el("span", "sl-bar");
      bar.style.width = `${Math.round(100 * Math.max(0, Math.min(1, prob)))}%`;
      cell.append(bar, el("span", "", prob.toFixed(3)));
      tr.appendChild(cell);
      tr.appendChild(el("td", "", mine ? "\u25c0" : ""));
      table.appendChild(tr);
    });
    side.appendChild(table);
    sides.appendChild(side);
  }
  panel.appendChild(sides);
  const metrics = el("div", "sl-topk-metrics");
  for (const [name, value] of row.metrics) metrics.appendChild(el("span", "", `${name} ${value}`));
  panel.appendChild(metrics);
  return panel;
}

export default draw;
