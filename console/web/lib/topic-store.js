// What the explorer knows about the topics it receives: a tree of topic levels with message and
// topic counts per branch, and per topic the last payload, its age and a short history of its
// numeric value. Plain data updated in O(depth) per message; the page renders from it at its
// own pace, so thousands of messages a second cost no rendering each.

const decoder = new TextDecoder();

function newNode(name, path) {
  return { name, path, children: new Map(), sorted: null, entry: null, topics: 0, messages: 0 };
}

/**
 * What a payload carries: `summary`, the text a tree row shows (the `value` of a gateway
 * envelope `{"timestamp", "value"}`, else the payload), and `number` when that is numeric.
 */
export function payloadValue(text) {
  const trimmed = text.trim();
  if (trimmed[0] === "{") {
    try {
      const parsed = JSON.parse(trimmed);
      if (parsed && typeof parsed === "object" && "value" in parsed) {
        const value = parsed.value;
        const number = typeof value === "number" && Number.isFinite(value) ? value : null;
        return { summary: typeof value === "string" ? value : JSON.stringify(value), number };
      }
    } catch {
      // Not JSON after all: shown as it came.
    }
    return { summary: text, number: null };
  }
  const number = trimmed === "" ? NaN : Number(trimmed);
  return { summary: text, number: Number.isFinite(number) ? number : null };
}

/** The number a payload carries: a bare number, or the `value` of a JSON object. */
export function numericValue(text) {
  return payloadValue(text).number;
}

export class TopicStore {
  constructor({ historyLength = 120 } = {}) {
    this.historyLength = historyLength;
    this.clear();
  }

  clear() {
    this.root = newNode("", "");
    this.entries = new Map();
    this.version = 0;
  }

  /** Records one message; `now` in milliseconds. */
  add(topic, payload, retained, now = Date.now()) {
    let entry = this.entries.get(topic);
    const isNew = !entry;
    let node = this.root;
    node.messages++;
    if (isNew) node.topics++;
    for (const level of topic.split("/")) {
      let child = node.children.get(level);
      if (!child) {
        child = newNode(level, node === this.root ? level : `${node.path}/${level}`);
        node.children.set(level, child);
        node.sorted = null;
      }
      child.messages++;
      if (isNew) child.topics++;
      node = child;
    }
    if (isNew) {
      entry = { topic, count: 0, history: [] };
      this.entries.set(topic, entry);
      node.entry = entry;
    }
    const text = decoder.decode(payload);
    entry.text = text;
    entry.bytes = payload.length;
    entry.count++;
    entry.lastAt = now;
    entry.retained = retained;
    const { summary, number } = payloadValue(text);
    entry.summary = summary;
    if (number !== null) {
      entry.history.push([now, number]);
      if (entry.history.length > this.historyLength) entry.history.shift();
    }
    this.version++;
  }

  node(path) {
    let node = this.root;
    for (const level of path.split("/")) {
      node = node.children.get(level);
      if (!node) return null;
    }
    return node;
  }

  /**
   * The rows to show: every child of an expanded branch, depth first, levels sorted by name.
   * `expanded` answers `has(path)`: a Set of paths, or an {@link Expansion}.
   */
  rows(expanded) {
    const rows = [];
    const visit = (node, depth) => {
      if (!node.sorted) {
        node.sorted = [...node.children.values()].sort((a, b) => a.name.localeCompare(b.name));
      }
      for (const child of node.sorted) {
        rows.push({ node: child, depth });
        if (child.children.size && expanded.has(child.path)) visit(child, depth + 1);
      }
    };
    visit(this.root, 0);
    return rows;
  }
}

/**
 * Which branches of the tree are open. "Expand all" must hold for branches that arrive after
 * the click too, so it is a mode with exceptions rather than the set of paths that existed:
 * with `all`, a branch is open unless the user closed it; without, only if they opened it.
 */
export class Expansion {
  constructor(all, toggled) {
    this.all = all;
    this.toggled = toggled;
  }

  static none() {
    return new Expansion(false, new Set());
  }

  static every() {
    return new Expansion(true, new Set());
  }

  has(path) {
    return this.all !== this.toggled.has(path);
  }

  /** A new expansion with `path` opened or closed. */
  toggle(path) {
    const toggled = new Set(this.toggled);
    toggled.has(path) ? toggled.delete(path) : toggled.add(path);
    return new Expansion(this.all, toggled);
  }
}
