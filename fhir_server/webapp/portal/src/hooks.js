import { h } from "preact";
import { useCallback, useEffect, useRef, useState } from "preact/hooks";
import { follow } from "../../static/live.js";
import { t } from "./strings.js";

/** Run `load` (async) now and whenever `deps` change; `reload()` runs it again. */
export function useLoad(load, deps) {
  const [state, setState] = useState({ data: null, error: null, loading: true });
  const run = useCallback(() => {
    setState((s) => ({ ...s, loading: true }));
    load().then(
      (data) => setState({ data, error: null, loading: false }),
      (error) => setState({ data: null, error, loading: false }),
    );
  }, deps);
  useEffect(run, [run]);
  return { ...state, reload: run };
}

/** Follow `criteria` (FHIR searches) live over the websocket (static/live.js: one reused
 *  Subscription per criteria, bound with a $watch token, reconnects with back-off, a slow poll
 *  while websockets are unavailable); `onChange()` runs when something they match changes.
 *  Returns the connection state ("connecting", "live", "polling"). */
export function useLive(api, criteria, onChange) {
  const [state, setState] = useState("");
  const latest = useRef(onChange);
  latest.current = onChange;
  const key = criteria.join("\n");
  useEffect(() => {
    if (!criteria.length) return undefined;
    const following = follow({
      watch: () =>
        api.op("Subscription/$watch", criteria.map((c) => ({ name: "criteria", valueString: c }))),
      onChange: () => latest.current(),
      onState: setState,
    });
    return () => following.stop();
  }, [api, key]);
  return state;
}

/** A quiet line that says whether the page is live (useLive's state). */
export function LiveNote({ state }) {
  if (!["connecting", "live", "polling"].includes(state)) return null;
  return h("p", { class: "live", "data-state": state }, t(`live_${state}`));
}
