// One storyboard: its panels fill in as its events arrive (replayed from the start, then live), and each panel can
// be fixed once the storyboard has ended: a new seed, an edited prompt, or another of its attempts kept.

import { api, fileBlob, followEvents } from "./api.js";
import { $, clear, el, saveBlob, stateName, verdictName } from "./dom.js";

const RUNNING = new Set(["STORYBOARD_STATE_QUEUED", "STORYBOARD_STATE_PLANNING", "STORYBOARD_STATE_RENDERING",
  "STORYBOARD_STATE_ASSEMBLING"]);
const DOWNLOADS = [ // path under the storyboard, file name, what it is
  ["storyboard.pdf", "storyboard.pdf", "PDF"],
  ["grid.png", "storyboard_grid.png", "Contact sheet"],
  ["storyboard.zip", "storyboard.zip", "ZIP of the folder"],
  ["animatic.mp4", "animatic.mp4", "Animatic (MP4)"],
  ["animatic.gif", "animatic.gif", "Animatic (GIF)"],
  ["shots.csv", "shots.csv", "Shot list (CSV)"],
  ["frames.json", "frames.json", "frames.json"],
  ["report.json", "report.json", "report.json"],
];
const MAX_SEED = 2 ** 31 - 1;

function score(value) {
  return typeof value === "number" ? value.toFixed(2) : "–";
}

class Panel {
  constructor(board, scene) {
    this.board = board;
    this.frame = scene.frame;
    this.scene = scene;
    this.attempts = new Map(); // attempt number -> {seed, backend, verdict, score, reason}
    this.latest = 0;
    this.keptAttempt = 0;
    this.kept = false;
    this.retried = false;
    this.repetitive = false;
    this.shown = "";
    this.imageUrl = null;
    this.element = this.build();
  }

  build() {
    const n = this.frame;
    this.picture = el("div", { class: "picture" }, el("span", { class: "placeholder", text: `Frame ${n}` }));
    this.progress = el("progress", { max: 1, value: 0, "aria-label": `Frame ${n} progress` });
    this.badges = el("ul", { class: "badges", "aria-label": `Frame ${n} badges` });
    this.scores = el("p", { class: "scores" });
    this.caption = el("p", { class: "caption" });
    this.tools = el("div", { class: "tools" });
    return el("li", { class: "panel", id: `panel-${n}`, "data-frame": String(n), "aria-label": `Frame ${n}` },
      this.picture, this.progress, el("div", { class: "panel-text" }, this.caption, this.badges, this.scores),
      this.tools);
  }

  // What the frame shows, in words people read: the characters by name, not by their trigger tokens.
  get description() {
    let text = this.scene.description || this.scene.prompt || "";
    for (const { trigger_token: token, name } of this.board.storyboard.plan?.characters || []) {
      if (token && name) text = text.replaceAll(token, name);
    }
    return text;
  }

  // -- what the events say --------------------------------------------------------------------------------------

  progressed({ step, total_steps: total }) {
    this.progress.max = total || 1;
    this.progress.value = step || 0;
    this.progress.hidden = false;
  }

  rendered({ attempt, seed, backend }) {
    this.attempts.set(attempt, { ...(this.attempts.get(attempt) || {}), seed, backend });
    this.latest = Math.max(this.latest, attempt);
    this.kept = false;
    this.progress.value = this.progress.max;
  }

  validated({ attempt, verdict, score: scores, reason }) {
    const known = this.attempts.get(attempt) || {};
    this.attempts.set(attempt, { ...known, verdict, score: scores, reason });
    if (verdict === "VERDICT_REPETITIVE") this.repetitive = true;
    this.verdict = verdict;
    this.score = scores;
  }

  retrying() {
    this.retried = true;
  }

  settled(result) {
    this.kept = Boolean(result.rendered);
    const seed = String(result.seed ?? "0");
    const numbers = [...this.attempts].filter(([, a]) => String(a.seed) === seed).map(([n]) => n);
    this.keptAttempt = numbers.length ? Math.max(...numbers) : this.latest;
    this.verdict = result.verdict;
    this.score = result.score;
    this.repetitive = result.verdict === "VERDICT_REPETITIVE";
    this.retried = (result.attempts || 0) > 1;
    this.progress.hidden = this.kept;
    if (this.promptText) delete this.promptText.dataset.edited; // the prompt it now has is shown
  }

  // -- what the panel shows -------------------------------------------------------------------------------------

  refresh(ended) {
    const n = this.frame;
    const backend = (this.attempts.get(this.kept ? this.keptAttempt : this.latest) || {}).backend || "";
    this.caption.replaceChildren(el("strong", { text: `${n}` }), ` · ${this.scene.camera || "shot"} — `,
      this.description);
    clear(this.badges);
    const badge = (text, kind) => this.badges.append(el("li", { class: `badge ${kind}`, text }));
    if (this.verdict) badge(verdictName(this.verdict), this.verdict === "VERDICT_PASS" ? "good" : "warn");
    if (this.retried) badge(`re-rendered (${this.attempts.size} attempts)`, "info");
    if (this.repetitive && this.verdict !== "VERDICT_REPETITIVE") badge("repetitive", "warn");
    if (backend === "sketch") badge("sketch preview", "preview");
    const scored = this.score || {};
    const likeness = (scored.characters || []).map(({ trigger_token: token, consistency }) =>
      ` · like ${this.board.characterName(token)}'s pictures ${score(consistency)}`).join("");
    this.scores.textContent = this.score
      ? `consistency ${score(scored.consistency)} · alignment ${score(scored.alignment)}${likeness}` : "";
    this.element.classList.toggle("preview", backend === "sketch");
    this.showImage();
    this.showTools(ended);
  }

  async showImage() {
    const path = this.kept ? `frames/${this.frame}` : this.latest ? `frames/${this.frame}/attempts/${this.latest}` : "";
    const version = this.kept ? `kept:${this.keptAttempt}:${this.board.version}` : path;
    if (!path || version === this.shown) return;
    this.shown = version;
    try {
      const blob = await fileBlob(this.board.id, path);
      if (this.shown !== version) return;
      if (this.imageUrl) URL.revokeObjectURL(this.imageUrl);
      this.imageUrl = URL.createObjectURL(blob);
      const label = `Frame ${this.frame}: ${this.description}${this.kept ? "" : " (rendering)"}`;
      this.picture.replaceChildren(el("img", { src: this.imageUrl, alt: label }));
    } catch {
      this.shown = ""; // try again on the next event
    }
  }

  // The tools are made once and only enabled or disabled after, so an open editor keeps what is typed in it.
  makeTools() {
    const n = this.frame;
    this.newSeed = el("button", { type: "button", text: "New seed", "aria-label": `Render frame ${n} again with a new seed`,
      onclick: () => this.board.fix(() => api.regenerate(this.board.id, n,
        { seed: Math.floor(Math.random() * MAX_SEED) })) });
    const id = `prompt-${n}`;
    this.promptText = el("textarea", { id, rows: 3, value: this.scene.prompt || "",
      oninput: () => { this.promptText.dataset.edited = "true"; } });
    const error = el("p", { class: "error", id: `${id}-error`, role: "alert" });
    this.promptText.setAttribute("aria-describedby", error.id);
    this.sendPrompt = el("button", { type: "button", text: "Render with this prompt",
      onclick: () => this.board.fix(() => api.regenerate(this.board.id, n, { prompt: this.promptText.value }), error) });
    this.attemptList = el("ul", { class: "attempts" });
    this.attemptSummary = el("summary", { "aria-label": `Attempts of frame ${n}` });
    const chooser = el("details", { class: "choose-attempt",
      ontoggle: () => chooser.open && this.fillAttempts() }, this.attemptSummary, this.attemptList);
    this.downloadButton = el("button", { type: "button", text: "Download", "aria-label": `Download frame ${n}`,
      onclick: () => this.board.download(`frames/${n}`, `frame_${String(n).padStart(3, "0")}.png`) });
    this.tools.append(this.newSeed,
      el("details", { class: "edit-prompt" },
        el("summary", { text: "Edit prompt", "aria-label": `Edit the prompt of frame ${n}` }),
        el("label", { for: id, text: `Prompt of frame ${n}` }), this.promptText, error, this.sendPrompt),
      chooser, this.downloadButton);
    this.chooser = chooser;
  }

  showTools(ended) {
    if (!this.newSeed) this.makeTools();
    const disabled = !ended || !this.board.planned;
    for (const control of [this.newSeed, this.promptText, this.sendPrompt]) control.disabled = disabled;
    this.downloadButton.disabled = !this.kept;
    this.attemptSummary.textContent = `Attempts (${this.attempts.size})`;
    if (!this.promptText.dataset.edited) this.promptText.value = this.scene.prompt || "";
    if (this.chooser.open) this.fillAttempts();
  }

  fillAttempts() {
    const list = clear(this.attemptList);
    const disabled = !this.board.ended;
    for (const [number, attempt] of [...this.attempts].sort(([a], [b]) => a - b)) {
      const isKept = this.kept && number === this.keptAttempt;
      const thumbnail = el("div", { class: "thumb" });
      list.append(el("li", { class: isKept ? "kept" : "" }, thumbnail,
        el("p", { text: `Attempt ${number} · seed ${attempt.seed} · ${verdictName(attempt.verdict) || "not scored"}` +
          (attempt.score ? ` · consistency ${score(attempt.score.consistency)}` : "") }),
        isKept ? el("p", { class: "badge good", text: "kept" })
          : el("button", { type: "button", text: "Keep this one", disabled,
            "aria-label": `Keep attempt ${number} of frame ${this.frame}`,
            onclick: () => this.board.fix(() => api.keepAttempt(this.board.id, this.frame, number)) })));
      fileBlob(this.board.id, `frames/${this.frame}/attempts/${number}`).then((blob) => {
        thumbnail.append(el("img", { src: URL.createObjectURL(blob),
          alt: `Attempt ${number} of frame ${this.frame}: ${this.description}` }));
      }).catch(() => thumbnail.append(el("span", { text: "image unavailable" })));
    }
  }
}

export class BoardView {
  constructor(root) {
    this.root = root;
    this.panels = new Map();
    this.follower = null;
    this.version = 0;
  }

  close() {
    if (this.follower) this.follower.stop();
    for (const panel of this.panels.values()) if (panel.imageUrl) URL.revokeObjectURL(panel.imageUrl);
  }

  async open(id) {
    this.id = id;
    clear(this.root).append(el("p", { class: "hint", text: "Loading the storyboard…" }));
    let storyboard;
    try {
      storyboard = await api.get(id);
    } catch (error) {
      clear(this.root).append(el("h1", { text: "Storyboard not found" }),
        el("p", { class: "error", role: "alert", text: error.message }));
      return;
    }
    this.storyboard = storyboard;
    this.build();
    this.follow(0);
  }

  characterName(token) {
    const found = (this.storyboard.plan?.characters || []).find((c) => c.trigger_token === token);
    return found ? found.name : token;
  }

  get ended() {
    return !RUNNING.has(this.storyboard.state);
  }

  get planned() {
    return Boolean(this.storyboard.plan);
  }

  build() {
    const story = this.storyboard.spec?.story || this.storyboard.plan?.story || "";
    this.status = el("p", { class: "status", role: "status", "aria-live": "polite" });
    this.connection = el("p", { class: "connection", "aria-live": "polite" });
    this.errorLine = el("p", { class: "error", role: "alert" });
    this.warnings = el("ul", { class: "warnings" });
    this.grid = el("ol", { class: "panels" });
    this.downloads = el("div", { class: "downloads", role: "group", "aria-label": "Downloads" });
    this.cancelButton = el("button", { type: "button", text: "Cancel", onclick: () => this.cancel() });
    clear(this.root).append(
      el("h1", { class: "story-title", text: story }),
      el("div", { class: "board-bar" }, this.status, this.connection, this.cancelButton),
      this.errorLine, this.warnings, this.grid,
      el("h2", { text: "Downloads" }), this.downloads);
    this.placePanels();
    this.refresh();
  }

  placePanels() {
    const { plan, spec = {} } = this.storyboard;
    if (!plan || this.panels.size) return;
    for (const scene of plan.scenes) {
      const panel = new Panel(this, scene);
      if (spec.width && spec.height) panel.picture.style.aspectRatio = `${spec.width} / ${spec.height}`;
      this.panels.set(scene.frame, panel);
      this.grid.append(panel.element);
    }
    clear(this.warnings).append(...(plan.warnings || []).map((text) => el("li", { text })));
  }

  follow(after) {
    if (this.follower) this.follower.stop();
    this.follower = followEvents(this.id, after, {
      onEvent: (kind, event) => this.apply(kind, event),
      onConnection: (state, error) => {
        const words = { live: "live", ended: "", reconnecting: "connection lost: reconnecting…" };
        this.connection.textContent = state === "refused" ? error.message : words[state] ?? "";
        this.connection.dataset.state = state;
      },
    });
  }

  apply(kind, event) {
    this.root.dataset.lastEvent = event.sequence; // how far the page has followed (tests wait on it)
    const body = event[kind] || {};
    const panel = this.panels.get(body.frame);
    switch (kind) {
      case "accepted":
        this.storyboard = { ...this.storyboard, ...body.storyboard, plan: this.storyboard.plan };
        break;
      case "queued":
        this.storyboard.state = "STORYBOARD_STATE_QUEUED";
        this.storyboard.queue_position = body.position;
        break;
      case "plan_ready":
        this.storyboard.plan = body.plan;
        this.storyboard.state = "STORYBOARD_STATE_RENDERING";
        this.placePanels();
        break;
      case "frame_progress":
        this.storyboard.state = "STORYBOARD_STATE_RENDERING";
        panel?.progressed(body);
        return; // a bar moves; nothing else changes
      case "frame_rendered":
        panel?.rendered(body);
        break;
      case "frame_validated":
        panel?.validated(body);
        break;
      case "retry":
        panel?.retrying(body);
        break;
      case "completed":
        this.completed(body.storyboard);
        break;
      case "failed":
        this.storyboard.state = body.code === "CANCELLED" ? "STORYBOARD_STATE_CANCELLED" : "STORYBOARD_STATE_FAILED";
        this.storyboard.error = body.message;
        break;
      default:
        return;
    }
    this.refresh(panel);
  }

  completed(storyboard) {
    this.storyboard = { ...this.storyboard, ...storyboard };
    this.version += 1; // kept frames may have changed: fetch them again
    for (const [index, result] of (storyboard.frames || []).entries()) {
      const panel = this.panels.get(result.frame || index + 1);
      if (panel) {
        panel.scene = storyboard.plan?.scenes?.[index] || panel.scene;
        panel.settled(result);
      }
    }
  }

  refresh(only) {
    const { state, queue_position: place, error } = this.storyboard;
    const words = stateName(state);
    this.status.textContent = place ? `waiting to start: ${place} in line` : `state: ${words}`;
    this.root.dataset.state = words;
    this.errorLine.textContent = error || "";
    this.cancelButton.hidden = this.ended;
    for (const panel of only ? [only] : this.panels.values()) panel.refresh(this.ended);
    this.showDownloads();
  }

  showDownloads() {
    const ready = this.storyboard.state === "STORYBOARD_STATE_COMPLETED";
    clear(this.downloads).append(...DOWNLOADS.map(([path, name, label]) =>
      el("button", { type: "button", text: label, disabled: !ready, "data-file": name,
        onclick: () => this.download(path, `${this.id}_${name}`) })));
  }

  async download(path, fileName) {
    this.errorLine.textContent = "";
    try {
      saveBlob(await fileBlob(this.id, path), fileName);
    } catch (error) {
      this.errorLine.textContent = `${fileName}: ${error.message}`;
    }
  }

  // A fix (regenerate, keep an attempt) puts the storyboard back to work: follow its new events from here.
  async fix(request, errorSlot = this.errorLine) {
    this.errorLine.textContent = "";
    errorSlot.textContent = "";
    const after = this.follower ? this.follower.last : 0;
    try {
      const storyboard = await request();
      this.storyboard = { ...this.storyboard, state: storyboard.state, error: "" };
      this.refresh();
      this.follow(after);
    } catch (error) {
      errorSlot.textContent = error.message;
    }
  }

  async cancel() {
    try {
      await api.cancel(this.id);
    } catch (error) {
      this.errorLine.textContent = error.message;
    }
  }
}
