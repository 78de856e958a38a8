// Live views: follow FHIR searches over Hearth's websocket instead of polling
// (docs/subscriptions.md "Live views", docs/webapp.md). Shared by the clinicians' app and the
// patient portal (which imports this file into its Vite bundle).
//
// follow({ watch, onChange, onState }):
// - watch(): the app's own call of `POST Subscription/$watch` with its criteria; resolves to the
//   Parameters answer (token, websocket-url, subscription ids). The server reuses one
//   Subscription per criteria and owner, and ends unused ones within the hour.
// - The websocket is opened without credentials (a browser cannot set Authorization on it) and
//   bound with `bind-with-token <token>`; each `event-notification` Bundle calls onChange()
//   (several close together call it once). A `heartbeat` comes every 30 s.
// - A closed or silent socket is opened again after 1, 2, 4 … 60 s; the app asks $watch again
//   each time (a fresh token, and a new Subscription if its old one ended). Every 20 minutes it
//   reconnects on purpose, which keeps its Subscription from ending.
// - While the socket is not live (a proxy that refuses websockets, the server away), onChange()
//   runs every SLOW_POLL_MS: a slow poll, never worse than a reload.
// - onState(state): "connecting" | "live" | "polling" | "stopped", for the page to show.
// Returns { stop() }.

const BACKOFF_MS = [1000, 2000, 4000, 8000, 16000, 32000, 60000];
const SLOW_POLL_MS = 60000;
const SILENT_MS = 75000; // no heartbeat for this long: the socket is dead
const RENEW_MS = 20 * 60000;
const DEBOUNCE_MS = 300;

function notificationType(text) {
  let bundle;
  try {
    bundle = JSON.parse(text);
  } catch {
    return null; // "error …" lines from the server
  }
  const status = (((bundle.entry || [])[0] || {}).resource || {}).parameter || [];
  return (status.find((p) => p.name === "type") || {}).valueCode || null;
}

export function follow({ watch, onChange, onState = () => {}, WebSocketImpl = globalThis.WebSocket }) {
  let socket = null;
  let stopped = false;
  let failures = 0;
  let retryTimer = null;
  let pollTimer = null;
  let silentTimer = null;
  let renewTimer = null;
  let changeTimer = null;
  let state = "";
  let catchUp = false; // after the first live socket, a new one first reloads what it missed

  const setState = (next) => {
    if (next !== state) {
      state = next;
      onState(next);
    }
  };

  const changed = () => {
    clearTimeout(changeTimer);
    changeTimer = setTimeout(() => !stopped && onChange(), DEBOUNCE_MS);
  };

  const startPolling = () => {
    if (pollTimer === null && !stopped) pollTimer = setInterval(() => onChange(), SLOW_POLL_MS);
    setState("polling");
  };

  const stopPolling = () => {
    clearInterval(pollTimer);
    pollTimer = null;
  };

  const watchdog = () => {
    clearTimeout(silentTimer);
    silentTimer = setTimeout(() => socket && socket.close(), SILENT_MS);
  };

  const drop = () => {
    clearTimeout(silentTimer);
    clearTimeout(renewTimer);
    if (socket) {
      socket.onclose = socket.onmessage = socket.onerror = socket.onopen = null;
      try {
        socket.close();
      } catch {
        // already closed
      }
      socket = null;
    }
  };

  const retry = () => {
    drop();
    if (stopped) return;
    catchUp = true;
    startPolling();
    const wait = BACKOFF_MS[Math.min(failures, BACKOFF_MS.length - 1)];
    failures += 1;
    retryTimer = setTimeout(connect, wait);
  };

  async function connect() {
    if (stopped) return;
    if (!WebSocketImpl) return startPolling(); // no websockets here at all
    if (state !== "polling") setState("connecting");
    let binding;
    try {
      const answer = await watch();
      binding = Object.fromEntries(
        (answer.parameter || []).filter((p) => p.name !== "subscription").map((p) => [p.name, p.valueString || p.valueUrl || p.valueDateTime]),
      );
    } catch (err) {
      if (err && (err.status === 401 || err.status === 403)) return startPolling(); // not for this account
      return retry();
    }
    if (stopped) return;
    let ws;
    try {
      ws = new WebSocketImpl(binding["websocket-url"]);
    } catch {
      return retry(); // a CSP or proxy refusing ws: the slow poll carries on
    }
    socket = ws;
    let wasLive = false;
    ws.onopen = () => ws.send(`bind-with-token ${binding.token}`);
    ws.onmessage = (msg) => {
      const kind = notificationType(String(msg.data));
      if (kind === null) return retry(); // the binding was refused
      watchdog();
      if (kind === "handshake" && !wasLive) {
        wasLive = true;
        failures = 0;
        stopPolling();
        setState("live");
        if (catchUp) changed(); // what changed while the socket was away
        catchUp = true;
        clearTimeout(renewTimer);
        renewTimer = setTimeout(() => {
          drop();
          connect();
        }, RENEW_MS);
      } else if (kind === "event-notification") {
        changed();
      }
    };
    ws.onerror = () => {};
    ws.onclose = () => retry();
  }

  connect();
  return {
    stop() {
      stopped = true;
      clearTimeout(retryTimer);
      clearTimeout(changeTimer);
      stopPolling();
      drop();
      setState("stopped");
    },
  };
}
