// Hook: data from one API route, loaded when shown, reloaded on demand (after an action, or when
// the broker pushes a change) and at a slow interval as a safety net.

import { useCallback, useEffect, useRef, useState } from "../vendor/vendor.js";
import { get } from "./api.js";

export function useResource(path, { every = 0 } = {}) {
  const [state, setState] = useState({ data: null, error: null, loading: true });
  const current = useRef(path);
  current.current = path;
  const reload = useCallback(async () => {
    try {
      const data = await get(path);
      if (current.current === path) setState({ data, error: null, loading: false });
    } catch (error) {
      if (current.current === path) setState((s) => ({ ...s, error, loading: false }));
    }
  }, [path]);
  useEffect(() => {
    setState({ data: null, error: null, loading: true });
    reload();
    if (!every) return;
    const timer = setInterval(reload, every);
    return () => clearInterval(timer);
  }, [path, every]);
  return { ...state, reload };
}

/** A function that runs `fn` at most once per `ms`, the last call winning. */
export function debounce(fn, ms) {
  let timer = null;
  return (...args) => {
    clearTimeout(timer);
    timer = setTimeout(() => fn(...args), ms);
  };
}
