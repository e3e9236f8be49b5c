// The REST bridge as the studio calls it: the API key from session storage in the Authorization header (never in
// a URL), errors as ApiError naming the field the gateway names, and a storyboard's server-sent events read from a
// fetch stream (EventSource cannot send the header), resumed with Last-Event-ID after a dropped connection.

const KEY_ITEM = "storyboard.apiKey";
const FIELD_PREFIX = /^([A-Za-z_][\w.[\]-]*): /;

export function apiKey() {
  return sessionStorage.getItem(KEY_ITEM) || "";
}

export function setApiKey(key) {
  if (key) sessionStorage.setItem(KEY_ITEM, key);
  else sessionStorage.removeItem(KEY_ITEM);
}

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
    const named = FIELD_PREFIX.exec(message);
    this.field = named ? named[1] : "";
    this.problem = named ? message.slice(named[0].length) : message;
  }
}

// Listeners told of every 401, so the page can ask for a key wherever the call came from.
const unauthorizedListeners = [];
export function onUnauthorized(listener) {
  unauthorizedListeners.push(listener);
}

function headers(extra = {}) {
  const key = apiKey();
  return key ? { ...extra, Authorization: `Bearer ${key}` } : extra;
}

async function failure(response) {
  let code = `HTTP ${response.status}`;
  let message = response.statusText || "request failed";
  try {
    const body = await response.json();
    if (body && body.error) ({ code, message } = body.error);
  } catch {
    // not the bridge's JSON error shape (a proxy's page, say): keep the status line
  }
  const error = new ApiError(response.status, code, message);
  if (response.status === 401) unauthorizedListeners.forEach((listener) => listener(error));
  return error;
}

async function call(method, path, body) {
  const init = { method, headers: headers(body === undefined ? {} : { "Content-Type": "application/json" }) };
  if (body !== undefined) init.body = JSON.stringify(body);
  let response;
  try {
    response = await fetch(path, init);
  } catch (error) {
    throw new ApiError(0, "UNAVAILABLE", `the gateway cannot be reached (${error.message})`);
  }
  if (!response.ok) throw await failure(response);
  return response.json();
}

export const api = {
  characters: () => call("GET", "/v1/characters"),
  plan: (spec) => call("POST", "/v1/plan", { spec }),
  create: (spec) => call("POST", "/v1/storyboards", { spec }),
  get: (id) => call("GET", `/v1/storyboards/${encodeURIComponent(id)}`),
  list: (pageToken = "") =>
    call("GET", `/v1/storyboards?page_size=24&page_token=${encodeURIComponent(pageToken)}`),
  cancel: (id) => call("POST", `/v1/storyboards/${encodeURIComponent(id)}:cancel`),
  regenerate: (id, frame, body) =>
    call("POST", `/v1/storyboards/${encodeURIComponent(id)}/frames/${frame}:regenerate`, body),
  keepAttempt: (id, frame, attempt) =>
    call("POST", `/v1/storyboards/${encodeURIComponent(id)}/frames/${frame}:keep`, { attempt }),
};

// A file of a storyboard as a Blob (images, documents): fetched with the key, never cached, since a fixed frame
// keeps its address.
export async function fileBlob(id, path) {
  let response;
  try {
    response = await fetch(`/v1/storyboards/${encodeURIComponent(id)}/${path}`, {
      headers: headers(),
      cache: "no-store",
    });
  } catch (error) {
    throw new ApiError(0, "UNAVAILABLE", `the gateway cannot be reached (${error.message})`);
  }
  if (!response.ok) throw await failure(response);
  return response.blob();
}

// One of a registered character's reference pictures, as a Blob.
export async function referencePicture(triggerToken, number) {
  let response;
  try {
    response = await fetch(`/v1/characters/${encodeURIComponent(triggerToken)}/references/${number}`,
      { headers: headers() });
  } catch (error) {
    throw new ApiError(0, "UNAVAILABLE", `the gateway cannot be reached (${error.message})`);
  }
  if (!response.ok) throw await failure(response);
  return response.blob();
}

export async function fileJson(id, path) {
  return JSON.parse(await (await fileBlob(id, path)).text());
}

// Splits a server-sent event stream into {id, event, data} records; feed it text as it arrives.
export class EventStreamParser {
  constructor(onEvent) {
    this.onEvent = onEvent;
    this.buffer = "";
  }

  feed(text) {
    this.buffer += text.replace(/\r\n?/g, "\n");
    let end;
    while ((end = this.buffer.indexOf("\n\n")) >= 0) {
      const block = this.buffer.slice(0, end);
      this.buffer = this.buffer.slice(end + 2);
      this.dispatch(block);
    }
  }

  dispatch(block) {
    const record = { id: "", event: "message", data: [] };
    for (const line of block.split("\n")) {
      if (!line || line.startsWith(":")) continue;
      const colon = line.indexOf(":");
      const name = colon < 0 ? line : line.slice(0, colon);
      const value = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
      if (name === "data") record.data.push(value);
      else if (name === "id" || name === "event") record[name] = value;
    }
    if (record.data.length) this.onEvent({ ...record, data: JSON.parse(record.data.join("\n")) });
  }
}

const TERMINAL = new Set(["completed", "failed"]);
const RETRY_DELAYS_MS = [500, 1000, 2000, 4000];

// Follows a storyboard's events after `after` until one ends it (completed, failed), reconnecting after a dropped
// connection from the last event seen. Returns a handle whose stop() ends it early.
export function followEvents(id, after, { onEvent, onConnection }) {
  let last = after;
  let stopped = false;
  let controller = null;

  async function readOnce() {
    controller = new AbortController();
    const response = await fetch(`/v1/storyboards/${encodeURIComponent(id)}/events`, {
      headers: headers({ "Last-Event-ID": String(last), Accept: "text/event-stream" }),
      signal: controller.signal,
      cache: "no-store",
    });
    if (!response.ok) throw await failure(response);
    onConnection("live");
    let ended = false;
    const parser = new EventStreamParser((record) => {
      last = Number(record.id) || last;
      onEvent(record.event, record.data);
      if (TERMINAL.has(record.event)) ended = true;
    });
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    while (!ended) {
      const { value, done } = await reader.read();
      if (done) break;
      parser.feed(value);
    }
    if (ended) await reader.cancel();
    return ended;
  }

  async function loop() {
    let failures = 0;
    while (!stopped) {
      try {
        if (await readOnce()) {
          onConnection("ended");
          return;
        }
        failures = 0; // the stream closed cleanly but early: reconnect at once
      } catch (error) {
        if (stopped) return;
        if (error instanceof ApiError && error.status >= 400 && error.status < 500) {
          onConnection("refused", error);
          return;
        }
        failures += 1;
      }
      if (stopped) return;
      onConnection("reconnecting");
      await new Promise((resolve) => setTimeout(resolve, RETRY_DELAYS_MS[Math.min(failures, RETRY_DELAYS_MS.length - 1)]));
    }
  }

  loop();
  return {
    stop() {
      stopped = true;
      if (controller) controller.abort();
    },
    get last() {
      return last;
    },
  };
}
