// The explorer: the live topic tree over MQTT over WebSocket. Messages are pushed by the broker,
// which sends only what this user may read; the page keeps them in a TopicStore and renders at
// most four times a second, and only the rows in view, so thousands of topics updating every
// second leave it responsive. Publish a message, or write to an endpoint's `/set` and see its
// `/res` answer.

import { html, useEffect, useMemo, useRef, useState } from "../vendor/vendor.js";
import { readableTopicFilters } from "../lib/access.js";
import { live, useWatch } from "../lib/live.js";
import { Expansion, TopicStore } from "../lib/topic-store.js";
import { age, count, prettyPayload, truncate } from "../lib/format.js";
import { ErrorBanner, Notice, useFieldId } from "../components/ui.js";
import { Sparkline } from "../components/sparkline.js";

const ROW_HEIGHT = 28;
const RENDER_EVERY_MS = 250;
const ANSWER_TIMEOUT_MS = 10000;

function parseFilters(text) {
  return text.split(/[,\s]+/).map((f) => f.trim()).filter(Boolean);
}

/** Re-renders at most every RENDER_EVERY_MS while `active`, when the store changed. */
function useThrottledRender(store, active) {
  const [, setVersion] = useState(0);
  const pending = useRef(false);
  const activeRef = useRef(active);
  activeRef.current = active;
  const schedule = () => {
    if (pending.current || !activeRef.current) return;
    pending.current = true;
    setTimeout(() => {
      pending.current = false;
      // Scheduled before a pause, due after it: the view stays as it was paused.
      if (activeRef.current) setVersion(store.version);
    }, RENDER_EVERY_MS);
  };
  // Ages move on even when nothing arrives.
  useEffect(() => {
    const timer = setInterval(() => activeRef.current && setVersion((v) => v + 1), 1000);
    return () => clearInterval(timer);
  }, []);
  return schedule;
}

function TreeRow({ row, expanded, selected, onToggle, onSelect, now }) {
  const { node, depth } = row;
  const branch = node.children.size > 0;
  const open = expanded.has(node.path);
  const entry = node.entry;
  const keyDown = (e) => {
    const rowElement = e.currentTarget;
    if (e.key === "ArrowRight" && branch && !open) onToggle(node.path);
    else if (e.key === "ArrowLeft" && branch && open) onToggle(node.path);
    else if (e.key === "ArrowDown") rowElement.nextElementSibling?.focus();
    else if (e.key === "ArrowUp") rowElement.previousElementSibling?.focus();
    else return;
    e.preventDefault();
  };
  return html`<button type="button" class=${`row ${selected ? "selected" : ""}`} role="treeitem"
      aria-expanded=${branch ? open : undefined} aria-level=${depth + 1} aria-selected=${selected}
      data-topic=${node.path} style=${`padding-left:${0.5 + depth * 1.1}rem`}
      onClick=${() => (entry ? onSelect(node.path) : onToggle(node.path))}
      onDblClick=${() => branch && onToggle(node.path)} onKeyDown=${keyDown}>
    <span class="twisty" aria-hidden="true"
      onClick=${(e) => { if (branch) { e.stopPropagation(); onToggle(node.path); } }}>${branch ? (open ? "▾" : "▸") : ""}</span>
    <span class="name">${node.name || "(empty)"}</span>
    ${branch && html`<span class="counts" title="topics · messages">${count(node.topics)} · ${count(node.messages)}</span>`}
    ${entry && html`<span class="value" title=${truncate(entry.text, 300)}>${truncate(entry.summary, 60)}</span>
      <span class="age" title="since the last message">${age(entry.lastAt, now)}</span>`}
  </button>`;
}

function Tree({ store, expanded, selected, onToggle, onSelect, now }) {
  const viewport = useRef(null);
  const [scrollTop, setScrollTop] = useState(0);
  const [height, setHeight] = useState(600);
  useEffect(() => {
    const observer = new ResizeObserver(([e]) => setHeight(e.contentRect.height));
    observer.observe(viewport.current);
    return () => observer.disconnect();
  }, []);
  const rows = store.rows(expanded);
  const first = Math.max(0, Math.floor(scrollTop / ROW_HEIGHT) - 5);
  const last = Math.min(rows.length, Math.ceil((scrollTop + height) / ROW_HEIGHT) + 5);
  return html`<div class="tree" ref=${viewport} role="tree" aria-label="Topics"
      onScroll=${(e) => setScrollTop(e.currentTarget.scrollTop)}>
    <div style=${`height:${rows.length * ROW_HEIGHT}px;position:relative`}>
      <div style=${`transform:translateY(${first * ROW_HEIGHT}px)`}>
        ${rows.slice(first, last).map((row) => html`<${TreeRow} key=${row.node.path} row=${row}
          expanded=${expanded} selected=${row.node.path === selected} now=${now}
          onToggle=${onToggle} onSelect=${onSelect} />`)}
      </div>
    </div>
    ${rows.length === 0 && html`<p class="muted empty">No messages yet on these topics.</p>`}
  </div>`;
}

function PublishForm({ initialTopic }) {
  const [topic, setTopic] = useState(initialTopic ?? "");
  const [payload, setPayload] = useState("");
  const [qos, setQos] = useState(1);
  const [retain, setRetain] = useState(false);
  const [result, setResult] = useState(null);
  const ids = { topic: useFieldId("pub-topic"), payload: useFieldId("pub-payload"), qos: useFieldId("pub-qos"), retain: useFieldId("pub-retain") };
  useEffect(() => setTopic(initialTopic ?? ""), [initialTopic]);
  const send = async (e) => {
    e.preventDefault();
    setResult(null);
    try {
      await live.publish(topic, payload, { qos: Number(qos), retain });
      setResult({ ok: `Published to ${topic}` });
    } catch (err) {
      setResult({ error: err.message });
    }
  };
  return html`<form class="publish" onSubmit=${send} aria-label="Publish a message">
    <h3>Publish</h3>
    <div class="field"><label for=${ids.topic}>Topic</label>
      <input id=${ids.topic} value=${topic} required onInput=${(e) => setTopic(e.target.value)} /></div>
    <div class="field"><label for=${ids.payload}>Payload</label>
      <textarea id=${ids.payload} rows="3" value=${payload} onInput=${(e) => setPayload(e.target.value)}></textarea></div>
    <div class="form-row">
      <div class="field"><label for=${ids.qos}>QoS</label>
        <select id=${ids.qos} value=${qos} onChange=${(e) => setQos(e.target.value)}>
          <option value="0">0</option><option value="1">1</option><option value="2">2</option></select></div>
      <div class="field checkbox"><input id=${ids.retain} type="checkbox" checked=${retain}
        onChange=${(e) => setRetain(e.target.checked)} /><label for=${ids.retain}>Retain</label></div>
      <button class="primary" type="submit">Publish</button>
    </div>
    ${result?.ok && html`<${Notice}>${result.ok}</${Notice}>`}
    <${ErrorBanner} error=${result?.error} />
  </form>`;
}

/** Writes `{"id", "value"}` to `<endpoint>/set` and shows what comes back on `<endpoint>/res`. */
function WriteForm({ initialTopic }) {
  const [endpoint, setEndpoint] = useState(initialTopic ?? "");
  const [value, setValue] = useState("");
  const [state, setState] = useState(null);
  const ids = { endpoint: useFieldId("write-endpoint"), value: useFieldId("write-value") };
  useEffect(() => setEndpoint((initialTopic ?? "").replace(/\/(set|res|req)$/, "")), [initialTopic]);
  const write = async (e) => {
    e.preventDefault();
    let parsed;
    try {
      parsed = JSON.parse(value);
    } catch {
      parsed = value; // Text is a value too.
    }
    const id = Math.floor(Math.random() * 1e9);
    setState({ waiting: true });
    let stop = null;
    const timer = setTimeout(() => {
      stop?.();
      setState({ error: `No answer on ${endpoint}/res within ${ANSWER_TIMEOUT_MS / 1000} s.` });
    }, ANSWER_TIMEOUT_MS);
    stop = live.watch([`${endpoint}/res`], (_topic, payload) => {
      const text = new TextDecoder().decode(payload);
      let answer;
      try {
        answer = JSON.parse(text);
      } catch {
        return;
      }
      if (answer?.id !== id) return; // Someone else's answer.
      clearTimeout(timer);
      stop();
      setState(answer.error ? { error: `The device refused: ${answer.error.message}`, answer: text } : { answer: text });
    }, () => {
      clearTimeout(timer);
      stop();
      setState({ error: `The broker refused to subscribe to ${endpoint}/res: no read permission there.` });
    });
    try {
      await live.publish(`${endpoint}/set`, JSON.stringify({ id, value: parsed }));
    } catch (err) {
      clearTimeout(timer);
      stop();
      setState({ error: err.message });
    }
  };
  return html`<form class="write" onSubmit=${write} aria-label="Write to an endpoint">
    <h3>Write to endpoint</h3>
    <div class="field"><label for=${ids.endpoint}>Endpoint topic</label>
      <input id=${ids.endpoint} value=${endpoint} required onInput=${(e) => setEndpoint(e.target.value)} />
      <small>Sent to <code>${endpoint || "…"}/set</code>, answered on <code>${endpoint || "…"}/res</code>.</small></div>
    <div class="field"><label for=${ids.value}>Value</label>
      <input id=${ids.value} value=${value} required placeholder=${'75, true, "text" or JSON'}
        onInput=${(e) => setValue(e.target.value)} /></div>
    <button class="primary" type="submit" disabled=${state?.waiting}>${state?.waiting ? "Waiting for the answer…" : "Write"}</button>
    <${ErrorBanner} error=${state?.error} />
    ${state?.answer && html`<div class="answer" role="status"><h4>Answer on ${endpoint}/res</h4>
      <pre>${prettyPayload(state.answer)}</pre></div>`}
  </form>`;
}

function TopicDetail({ entry, now }) {
  if (!entry) return html`<p class="muted">Select a topic to see its last message.</p>`;
  return html`<div class="topic-detail" aria-label="Selected topic">
    <h2><code>${entry.topic}</code></h2>
    <p class="muted topic-stats">${count(entry.count)} messages · last ${age(entry.lastAt, now)} ago · ${entry.bytes} bytes
      ${entry.retained ? " · retained" : ""}</p>
    <pre class="payload">${prettyPayload(entry.text)}</pre>
    ${entry.history.length > 0 && html`<${Sparkline} points=${entry.history} />`}
  </div>`;
}

export function ExplorerPage({ session }) {
  const store = useMemo(() => new TopicStore(), []);
  const defaults = useMemo(() => readableTopicFilters(session.permissions).join(", "), [session]);
  const [filterText, setFilterText] = useState(defaults || "#");
  const [filters, setFilters] = useState(parseFilters(filterText));
  const [expanded, setExpanded] = useState(Expansion.none);
  const [selected, setSelected] = useState(null);
  const [paused, setPaused] = useState(false);
  const [refused, setRefused] = useState([]);
  const [connection, setConnection] = useState({ state: live.state, error: live.error });
  const schedule = useThrottledRender(store, !paused);
  const filterId = useFieldId("filter");

  useEffect(() => live.onState(setConnection), []);
  useWatch(filters, (topic, payload, packet) => {
    store.add(topic, payload, packet.retain);
    schedule();
  }, (filter) => setRefused((r) => (r.includes(filter) ? r : [...r, filter])));

  // A new subscription starts an empty tree. This runs after useWatch has replaced the old
  // subscription, so no message of the old one lands in the new tree.
  const filterKey = filters.join("\n");
  const shownFilters = useRef(filterKey);
  useEffect(() => {
    if (shownFilters.current === filterKey) return;
    shownFilters.current = filterKey;
    store.clear();
    schedule();
  }, [filterKey]);

  const applyFilter = (e) => {
    e.preventDefault();
    setRefused([]);
    setSelected(null);
    setFilters(parseFilters(filterText));
  };
  const toggle = (path) => setExpanded((current) => current.toggle(path));
  const selectedEntry = selected ? store.entries.get(selected) : null;
  // Ages are drawn against the moment of the pause while paused, so a render for another
  // reason (the connection's state, a click) does not move them.
  const pausedAt = useRef(null);
  if (!paused) pausedAt.current = null;
  else pausedAt.current ??= Date.now();
  const now = pausedAt.current ?? Date.now();
  return html`<section class="explorer" aria-labelledby="explorer-title">
    <div class="title-row">
      <h1 id="explorer-title">Explorer</h1>
      <span class="muted" role="status">${count(store.entries.size)} topics · ${count(store.root.messages)} messages</span>
    </div>
    <form class="filter-row" onSubmit=${applyFilter}>
      <label for=${filterId}>Subscribe to</label>
      <input id=${filterId} value=${filterText} onInput=${(e) => setFilterText(e.target.value)}
        placeholder="services/# or plant/+/temperature; several separated by commas" />
      <button type="submit">Apply</button>
      <button type="button" aria-pressed=${paused} onClick=${() => setPaused(!paused)}>${paused ? "Resume" : "Pause"}</button>
      <button type="button" onClick=${() => setExpanded(Expansion.every())}>Expand all</button>
      <button type="button" onClick=${() => setExpanded(Expansion.none())}>Collapse all</button>
    </form>
    ${connection.error && connection.state !== "connected" && html`<${ErrorBanner} error=${connection.error} />`}
    ${refused.length > 0 && html`<${ErrorBanner} error=${`The broker refused ${refused.join(", ")}: this user may not read there.`} />`}
    ${paused && html`<${Notice}>Paused: the view is frozen; messages keep arriving and show on resume.</${Notice}>`}
    <div class="explorer-body">
      <${Tree} store=${store} expanded=${expanded} selected=${selected} onToggle=${toggle} onSelect=${setSelected} now=${now} />
      <aside class="explorer-side">
        <${TopicDetail} entry=${selectedEntry} now=${now} />
        <${WriteForm} initialTopic=${selected} />
        <${PublishForm} initialTopic=${selected} />
      </aside>
    </div>
  </section>`;
}
