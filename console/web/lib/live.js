// The console's one MQTT session over WebSocket (`/mqtt`, same origin), opened with the user's
// name and API token, so the broker applies that user's permissions to everything the console
// reads and writes. Pages subscribe through it and are pushed every message.

import { mqtt, useEffect, useRef } from "../vendor/vendor.js";
import { covers } from "./access.js";
import { currentSession, onSessionChange } from "./api.js";

const REFUSED = 0x80;

/** MQTT's matching: `+` one level, `#` the rest; wildcards at the start skip `$` topics. */
export function matches(filter, topic) {
  if (topic.startsWith("$") && (filter[0] === "+" || filter[0] === "#")) return false;
  return covers(filter, topic);
}

class LiveConnection {
  constructor() {
    this.client = null;
    this.state = "offline";
    this.error = null;
    this.stateListeners = new Set();
    /** filter -> Set of {onMessage, onRefused}: subscribed while at least one page watches. */
    this.watches = new Map();
  }

  /** `listener({state, error})` on every change of the connection's state. */
  onState(listener) {
    this.stateListeners.add(listener);
    listener({ state: this.state, error: this.error });
    return () => this.stateListeners.delete(listener);
  }

  setState(state, error = null) {
    this.state = state;
    this.error = error;
    for (const listener of this.stateListeners) listener({ state, error });
  }

  open(session) {
    this.close();
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    const clientId = "ironbridge-console-" + Math.random().toString(36).slice(2, 10);
    this.setState("connecting");
    const client = mqtt.connect(`${scheme}//${location.host}/mqtt`, {
      username: session.username,
      password: session.token,
      clientId,
      protocolVersion: 5,
      clean: true,
      reconnectPeriod: 3000,
      connectTimeout: 10000,
      // Subscriptions are this class's: made again on every connect from what pages watch.
      resubscribe: false,
    });
    client.on("connect", () => {
      this.setState("connected");
      this.sendSubscribe([...this.watches.keys()]);
    });
    client.on("reconnect", () => this.setState("connecting", this.error));
    client.on("offline", () => this.setState("offline", this.error));
    client.on("error", (e) => {
      const reason = e?.message || String(e);
      this.setState(this.state, `MQTT over WebSocket: ${reason}`);
    });
    client.on("message", (topic, payload, packet) => {
      for (const [filter, watchers] of this.watches) {
        if (!matches(filter, topic)) continue;
        for (const watcher of watchers) watcher.onMessage(topic, payload, packet);
      }
    });
    this.client = client;
  }

  close() {
    if (this.client) this.client.end(true);
    this.client = null;
    this.setState("offline");
  }

  sendSubscribe(filters) {
    if (!this.client?.connected || filters.length === 0) return;
    this.client.subscribe(filters, { qos: 0 }, (error, granted) => {
      const refused = error
        ? filters
        : (granted ?? []).filter((g) => g.qos >= REFUSED).map((g) => g.topic);
      for (const filter of refused) {
        for (const watcher of this.watches.get(filter) ?? []) watcher.onRefused?.(filter);
      }
    });
  }

  /**
   * Receives the messages of `filters` in `onMessage(topic, payloadBytes, packet)` until the
   * returned function is called. The broker's permissions decide: a filter it refuses is passed
   * to `onRefused(filter)` (after every connect), and messages the user may not read never come.
   */
  watch(filters, onMessage, onRefused) {
    const watcher = { onMessage, onRefused };
    const added = [];
    for (const filter of filters) {
      if (!this.watches.has(filter)) {
        this.watches.set(filter, new Set());
        added.push(filter);
      }
      this.watches.get(filter).add(watcher);
    }
    this.sendSubscribe(added);
    return () => {
      const removed = [];
      for (const filter of filters) {
        const watchers = this.watches.get(filter);
        if (!watchers) continue;
        watchers.delete(watcher);
        if (watchers.size === 0) {
          this.watches.delete(filter);
          removed.push(filter);
        }
      }
      if (this.client?.connected && removed.length) this.client.unsubscribe(removed);
    };
  }

  /** Resolves when the broker took the message (QoS 1), rejects with its reason otherwise. */
  publish(topic, payload, { qos = 1, retain = false } = {}) {
    return new Promise((resolve, reject) => {
      if (!this.client?.connected) return reject(new Error("not connected to the gateway's broker"));
      this.client.publish(topic, payload, { qos, retain }, (error, packet) => {
        if (error) return reject(new Error(`the broker refused the message on ${topic}: ${error.message}`));
        const code = packet?.reasonCode ?? 0;
        if (code >= REFUSED) {
          return reject(new Error(`the broker refused the message on ${topic} (reason code 0x${code.toString(16)}): no write permission there?`));
        }
        resolve();
      });
    });
  }
}

export const live = new LiveConnection();

if (currentSession()) live.open(currentSession());
onSessionChange((session) => (session ? live.open(session) : live.close()));

/** Hook: calls `onMessage` for the filters while the component is shown. */
export function useWatch(filters, onMessage, onRefused) {
  const handler = useRef(onMessage);
  handler.current = onMessage;
  const refused = useRef(onRefused);
  refused.current = onRefused;
  const key = filters.join("\n");
  useEffect(
    () => live.watch(filters, (...args) => handler.current(...args), (f) => refused.current?.(f)),
    [key],
  );
}
