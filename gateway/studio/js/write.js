// Write a story, plan it, approve the plan card by card, render exactly the approved cards (the plan-first API).

import { api, ApiError, referencePicture } from "./api.js";
import { $, clear, el } from "./dom.js";

export const MIN_SCENES = 6;
export const MAX_SCENES = 10;
const CLIP_WINDOW = 77;
const REVIEW_DELAY_MS = 500;
const REFERENCES_SHOWN = 3;
const DEFAULT_SHOT_SECONDS = 2;
const ASPECTS = [
  ["1:1", "1:1 square"],
  ["16:9", "16:9 widescreen"],
  ["9:16", "9:16 vertical"],
  ["4:3", "4:3 classic"],
  ["2.39:1", "2.39:1 cinemascope"],
];
export const SHOT_TYPES = [
  "extreme wide shot", "wide shot", "medium wide shot", "full shot", "medium shot", "medium close-up", "close-up",
  "extreme close-up", "low-angle shot", "high-angle shot", "over-the-shoulder shot", "POV shot", "two-shot",
  "tracking shot", "insert shot", "aerial shot", "dutch angle",
];
// The spec fields the form holds, by the id of the input that holds each.
const SPEC_FIELDS = {
  "spec.story": "story", "spec.num_frames": "frames", "spec.base_seed": "seed",
  "spec.num_inference_steps": "steps", "spec.guidance_scale": "guidance", "spec.negative_prompt": "negative",
  "spec.width": "width", "spec.height": "height", "spec.aspect": "aspect", "spec.characters": "characters",
};
const UPLOAD_FIELD = /^spec\.character_references\[(\d+)\]/;
const SCENE_FIELD = /^spec\.plan\.scenes(?:\[(\d+)\]|\.(\d+))\.?(\w*)/;

function field(id, label, control, hint = "") {
  const hintId = hint ? `${id}-hint` : null;
  if (hintId) control.setAttribute("aria-describedby", `${hintId} ${id}-error`);
  else control.setAttribute("aria-describedby", `${id}-error`);
  return el("div", { class: "field" },
    el("label", { for: id, text: label }),
    control,
    hint ? el("p", { class: "hint", id: hintId, text: hint }) : null,
    el("p", { class: "error", id: `${id}-error`, role: "alert" }));
}

function number(id, attributes) {
  return el("input", { id, name: id, type: "number", inputmode: "decimal", ...attributes });
}

export class WriteView {
  constructor(root, { onCreated }) {
    this.root = root;
    this.onCreated = onCreated;
    this.scenes = null; // the plan's cards once planned
    this.planStory = "";
    this.reviewTimer = null;
    this.reviewRound = 0;
  }

  render() {
    clear(this.root);
    this.form = this.buildForm();
    this.planSection = el("section", { class: "plan", "aria-labelledby": "plan-title", hidden: true });
    this.root.append(el("h1", { text: "New storyboard" }), this.form, this.planSection);
    this.loadCharacters();
    $("#story", this.form).focus();
  }

  buildForm() {
    const frames = el("select", { id: "frames", name: "frames" },
      el("option", { value: "", text: "let the planner choose" }),
      ...[6, 7, 8, 9, 10].map((n) => el("option", { value: String(n), text: String(n), selected: n === 8 })));
    const aspect = el("select", { id: "aspect", name: "aspect" },
      ...ASPECTS.map(([value, text]) => el("option", { value, text })));
    const advanced = el("details", { class: "advanced" },
      el("summary", { text: "Advanced" }),
      el("div", { class: "row" },
        field("seed", "Seed", number("seed", { min: 0, step: 1, placeholder: "42" })),
        field("steps", "Steps", number("steps", { min: 1, max: 150, step: 1, placeholder: "40" })),
        field("guidance", "Guidance", number("guidance", { min: 0, max: 30, step: 0.5, placeholder: "7.5" }))),
      el("div", { class: "row" },
        field("width", "Width (px)", number("width", { min: 256, max: 2048, step: 8, placeholder: "from the aspect" }),
          "Width and height replace the aspect's size"),
        field("height", "Height (px)", number("height", { min: 256, max: 2048, step: 8, placeholder: "from the aspect" }))),
      field("negative", "Negative prompt", el("textarea", { id: "negative", name: "negative", rows: 2,
        placeholder: "the planner's" })));
    const form = el("form", { class: "write", novalidate: true, onsubmit: (event) => { event.preventDefault(); this.plan(); } },
      field("story", "Story", el("textarea", { id: "story", name: "story", rows: 5, required: true,
        placeholder: "e.g. Aldar Kose tricks a wealthy merchant by selling him a magical pot" })),
      el("fieldset", { class: "characters", id: "characters", "aria-describedby": "characters-error" },
        el("legend", { text: "Characters" }),
        el("p", { class: "hint", id: "characters-list", text: "Loading the registered characters…" }),
        el("p", { class: "error", id: "characters-error", role: "alert" })),
      el("div", { class: "row" },
        field("frames", "Frames", frames),
        field("aspect", "Aspect ratio", aspect)),
      advanced,
      el("p", { class: "error form-error", id: "form-error", role: "alert" }),
      el("div", { class: "actions" },
        el("button", { type: "submit", class: "primary", id: "plan-button", text: "Plan" })));
    return form;
  }

  async loadCharacters() {
    const list = $("#characters-list", this.form);
    try {
      const { characters = [] } = await api.characters();
      if (!characters.length) {
        list.textContent = "No registered characters: the story's people are drawn from its words.";
        return;
      }
      list.replaceWith(el("ul", { class: "character-list" }, characters.map((character) => {
        const id = `character-${character.trigger_token}`;
        return el("li", {},
          el("input", { type: "checkbox", id, name: "character", value: character.name }),
          el("label", { for: id },
            el("span", { class: "character-name", text: character.name }),
            el("span", { class: "token", text: character.trigger_token })),
          this.referencePictures(character),
          this.pictureUpload(character));
      })));
    } catch (error) {
      list.textContent = `The characters cannot be listed: ${error.message}`;
    }
  }

  referencePictures(character) {
    const count = Math.min(character.reference_images || 0, REFERENCES_SHOWN);
    if (!count) return null;
    const pictures = el("span", { class: "references" });
    for (let number = 1; number <= count; number += 1) {
      referencePicture(character.trigger_token, number).then((blob) => {
        pictures.append(el("img", { src: URL.createObjectURL(blob),
          alt: `Reference picture ${number} of ${character.name}` }));
      }).catch(() => {}); // the name and the box are there without it
    }
    return pictures;
  }

  // Pictures of a character for this storyboard only, sent with it when it renders (the gateway checks them).
  pictureUpload(character) {
    const id = `upload-${character.trigger_token.replace(/\W/g, "_")}`;
    return el("span", { class: "upload" },
      el("label", { for: id, text: `Reference pictures for ${character.name}` }),
      el("input", { type: "file", id, name: "reference", multiple: true, accept: "image/png,image/jpeg,image/webp",
        "data-token": character.trigger_token, "aria-describedby": `${id}-error` }),
      el("p", { class: "error", id: `${id}-error`, role: "alert" }));
  }

  async uploadedReferences() {
    const references = [];
    for (const input of this.form.querySelectorAll("input[name=reference]")) {
      if (!input.files.length) continue;
      const pictures = await Promise.all([...input.files].map(async (file) => ({ data: await base64(file) })));
      references.push({ trigger_token: input.dataset.token, pictures });
    }
    return references;
  }

  // -- the request ----------------------------------------------------------------------------------------------

  value(id) {
    return $(`#${id}`, this.form).value.trim();
  }

  renderOptions() {
    const options = {};
    const numeric = { seed: "base_seed", steps: "num_inference_steps", guidance: "guidance_scale",
      width: "width", height: "height" };
    for (const [id, name] of Object.entries(numeric)) {
      if (this.value(id) !== "") options[name] = Number(this.value(id));
    }
    if (options.width === undefined && options.height === undefined) options.aspect = this.value("aspect");
    if (this.value("negative")) options.negative_prompt = this.value("negative");
    return options;
  }

  planSpec() {
    const spec = { story: $("#story", this.form).value };
    if (this.value("frames")) spec.num_frames = Number(this.value("frames"));
    const characters = [...this.form.querySelectorAll("input[name=character]:checked")].map((box) => box.value);
    if (characters.length) spec.characters = characters;
    return spec;
  }

  // -- errors next to their fields ------------------------------------------------------------------------------

  clearErrors() {
    this.root.querySelectorAll(".error").forEach((slot) => { slot.textContent = ""; });
    this.root.querySelectorAll("[aria-invalid]").forEach((input) => input.removeAttribute("aria-invalid"));
  }

  showError(error) {
    const message = error instanceof ApiError ? error.problem : String(error);
    const apiField = error instanceof ApiError ? error.field : "";
    const scene = SCENE_FIELD.exec(apiField);
    let slot = null;
    let input = null;
    if (scene && this.scenes) {
      const index = Number(scene[1] ?? scene[2]);
      const card = this.planSection.querySelectorAll(".card")[index];
      const name = ["description", "camera", "mood", "prompt", "duration_seconds"].includes(scene[3]) ? scene[3] : "";
      slot = card && $(`.error${name ? `[data-for=${name}]` : ".card-error"}`, card);
      input = card && name && $(`[name=${name}]`, card);
    } else if (UPLOAD_FIELD.test(apiField) && this.sentReferences) {
      const token = this.sentReferences[Number(UPLOAD_FIELD.exec(apiField)[1])];
      input = [...this.form.querySelectorAll("input[name=reference]")].find((box) => box.dataset.token === token);
      slot = input && $(`#${input.id}-error`, this.form);
    } else {
      const key = Object.keys(SPEC_FIELDS).find((prefix) => apiField === prefix || apiField.startsWith(`${prefix}[`));
      if (key) {
        slot = $(`#${SPEC_FIELDS[key]}-error`, this.form);
        input = $(`#${SPEC_FIELDS[key]}`, this.form);
        if (input && input.closest("details")) input.closest("details").open = true;
      }
    }
    if (!slot) {
      slot = this.scenes ? $("#plan-error", this.planSection) : $("#form-error", this.form);
    }
    slot.textContent = apiField && !input ? `${apiField}: ${message}` : message;
    if (input) {
      input.setAttribute("aria-invalid", "true");
      input.focus();
    }
  }

  async busy(button, work) {
    button.disabled = true;
    button.setAttribute("aria-busy", "true");
    try {
      await work();
    } finally {
      button.disabled = false;
      button.removeAttribute("aria-busy");
    }
  }

  // -- plan, review, render -------------------------------------------------------------------------------------

  async plan() {
    this.clearErrors();
    await this.busy($("#plan-button", this.form), async () => {
      try {
        const spec = { ...this.planSpec(), ...this.renderOptions() };
        const { plan } = await api.plan(spec);
        this.planStory = plan.story || spec.story;
        this.negativePrompt = plan.negative_prompt || "";
        this.scenes = plan.scenes.map((scene) => ({ ...scene, promptEdited: false }));
        this.warnings = plan.warnings || [];
        this.showPlan();
      } catch (error) {
        this.showError(error);
      }
    });
  }

  planBody() {
    return {
      story: this.planStory,
      scenes: this.scenes.map((scene) => ({
        description: scene.description || "",
        camera: scene.camera || "",
        mood: scene.mood || "",
        setting: scene.setting || "",
        lighting: scene.lighting || "",
        // A prompt the planner wrote goes back empty, so that it is written again from the scene as edited.
        prompt: scene.promptEdited ? scene.prompt || "" : "",
        trigger_tokens: scene.trigger_tokens || [],
        duration_seconds: Number(scene.duration_seconds) || 0,
      })),
    };
  }

  // A card's text changed: prompts the planner wrote are written again from the edited scenes, and every prompt's
  // tokens are counted again, by the planner's review of the plan as it now stands.
  scheduleReview() {
    clearTimeout(this.reviewTimer);
    this.reviewTimer = setTimeout(() => this.review(), REVIEW_DELAY_MS);
  }

  async review() {
    const round = ++this.reviewRound;
    if (this.scenes.some((scene) => !(scene.description || "").trim())) return; // a new card not written yet
    try {
      const { plan } = await api.plan({ plan: this.planBody() });
      if (round !== this.reviewRound) return; // edited again meanwhile: that review's answer counts
      plan.scenes.forEach((reviewed, index) => {
        const scene = this.scenes[index];
        if (!scene.promptEdited) scene.prompt = reviewed.prompt;
        scene.prompt_tokens = reviewed.prompt_tokens;
      });
      this.warnings = plan.warnings || [];
      this.refreshCards();
      $("#plan-error", this.planSection).textContent = "";
    } catch (error) {
      if (round === this.reviewRound) this.showError(error);
    }
  }

  async renderPlan(button) {
    this.clearErrors();
    clearTimeout(this.reviewTimer);
    await this.busy(button, async () => {
      try {
        const spec = { story: this.planStory, plan: this.planBody(), ...this.renderOptions() };
        const references = await this.uploadedReferences();
        if (references.length) spec.character_references = references;
        this.sentReferences = references.map((reference) => reference.trigger_token);
        const storyboard = await api.create(spec);
        this.onCreated(storyboard.id);
      } catch (error) {
        this.showError(error);
      }
    });
  }

  // -- the cards ------------------------------------------------------------------------------------------------

  showPlan() {
    clear(this.planSection);
    this.planSection.hidden = false;
    this.cardList = el("ol", { class: "cards" });
    this.planSection.append(
      el("h2", { id: "plan-title", text: "Approve the plan" }),
      el("p", { class: "hint", text: "Edit a card's words or shot, move, delete or add cards (6 to 10), then render " +
        "exactly these cards. A prompt you leave alone is written again from its edited scene." }),
      el("ul", { class: "warnings", id: "plan-warnings", "aria-live": "polite" }),
      this.cardList,
      el("p", { class: "error", id: "plan-error", role: "alert" }),
      el("div", { class: "actions" },
        el("button", { type: "button", id: "add-scene", text: "Add a scene", onclick: () => this.addScene() }),
        el("button", { type: "button", id: "replan", text: "Plan again", onclick: () => this.plan() }),
        el("button", { type: "button", class: "primary", id: "render-button", text: "Render",
          onclick: (event) => this.renderPlan(event.currentTarget) })));
    this.refreshCards();
    $("#plan-title", this.planSection).scrollIntoView({ block: "start" });
  }

  refreshCards() {
    const focused = document.activeElement;
    const keep = focused && focused.closest && focused.closest(".card") ? [focused.closest(".card").dataset.index,
      focused.name, focused.selectionStart] : null;
    clear(this.cardList).append(...this.scenes.map((scene, index) => this.card(scene, index)));
    clear($("#plan-warnings", this.planSection)).append(...this.warnings.map((text) => el("li", { text })));
    $("#add-scene", this.planSection).disabled = this.scenes.length >= MAX_SCENES;
    if (keep) {
      const again = $(`.card[data-index="${keep[0]}"] [name="${keep[1]}"]`, this.cardList);
      if (again) {
        again.focus();
        if (typeof keep[2] === "number" && again.setSelectionRange) again.setSelectionRange(keep[2], keep[2]);
      }
    }
  }

  card(scene, index) {
    const number = index + 1;
    const id = (name) => `scene-${number}-${name}`;
    const tokens = scene.prompt_tokens || 0;
    const shots = SHOT_TYPES.includes(scene.camera) || !scene.camera ? SHOT_TYPES : [scene.camera, ...SHOT_TYPES];
    const edit = (name) => (event) => {
      scene[name] = event.target.value;
      if (name === "prompt") scene.promptEdited = true;
      this.scheduleReview();
    };
    const errorSlot = (name) => el("p", { class: "error", "data-for": name, id: id(`${name}-error`), role: "alert" });
    return el("li", { class: "card", "data-index": String(index), "aria-label": `Scene ${number}` },
      el("header", {},
        el("h3", { text: `Frame ${number}` }),
        el("div", { class: "card-tools" },
          el("button", { type: "button", class: "icon", "aria-label": `Move frame ${number} earlier`, text: "↑",
            disabled: index === 0, onclick: () => this.move(index, -1) }),
          el("button", { type: "button", class: "icon", "aria-label": `Move frame ${number} later`, text: "↓",
            disabled: index === this.scenes.length - 1, onclick: () => this.move(index, 1) }),
          el("button", { type: "button", class: "icon", "aria-label": `Delete frame ${number}`, text: "✕",
            disabled: this.scenes.length <= MIN_SCENES, onclick: () => this.remove(index) }))),
      el("label", { for: id("camera"), text: "Shot" }),
      el("select", { id: id("camera"), name: "camera", onchange: edit("camera") },
        ...shots.map((shot) => el("option", { value: shot, text: shot, selected: shot === scene.camera }))),
      errorSlot("camera"),
      el("label", { for: id("description"), text: "What happens" }),
      el("textarea", { id: id("description"), name: "description", rows: 3, value: scene.description || "",
        "aria-describedby": id("description-error"), oninput: edit("description") }),
      errorSlot("description"),
      el("div", { class: "row" },
        el("div", {},
          el("label", { for: id("mood"), text: "Mood" }),
          el("input", { id: id("mood"), name: "mood", value: scene.mood || "", oninput: edit("mood") }),
          errorSlot("mood")),
        el("div", {},
          el("label", { for: id("duration_seconds"), text: "Seconds on screen" }),
          el("input", { id: id("duration_seconds"), name: "duration_seconds", type: "number", min: 0.5, max: 60,
            step: 0.5, value: String(scene.duration_seconds || DEFAULT_SHOT_SECONDS),
            oninput: (event) => { scene.duration_seconds = event.target.value; } }),
          errorSlot("duration_seconds"))),
      el("label", { for: id("prompt"), text: scene.promptEdited ? "Prompt (yours, rendered as written)" : "Prompt" }),
      el("textarea", { id: id("prompt"), name: "prompt", rows: 3, value: scene.prompt || "",
        "aria-describedby": `${id("tokens")} ${id("prompt-error")}`, oninput: edit("prompt") }),
      el("p", { class: tokens > CLIP_WINDOW ? "tokens over" : "tokens", id: id("tokens"),
        text: tokens ? `${tokens} / ${CLIP_WINDOW} CLIP tokens${tokens > CLIP_WINDOW ? ": the end is not drawn" : ""}`
          : "CLIP tokens: counted once the scene is described" }),
      errorSlot("prompt"),
      el("p", { class: "error card-error", role: "alert" }));
  }

  move(index, by) {
    const [scene] = this.scenes.splice(index, 1);
    this.scenes.splice(index + by, 0, scene);
    this.refreshCards();
    $(`.card[data-index="${index + by}"] button[aria-label^="Move frame ${index + by + 1} ${by < 0 ? "earlier" : "later"}"]`,
      this.cardList)?.focus();
    this.scheduleReview();
  }

  remove(index) {
    this.scenes.splice(index, 1);
    this.refreshCards();
    $(`.card[data-index="${Math.min(index, this.scenes.length - 1)}"] textarea`, this.cardList)?.focus();
    this.scheduleReview();
  }

  addScene() {
    const last = this.scenes[this.scenes.length - 1] || {};
    this.scenes.push({ description: "", camera: "medium shot", mood: last.mood || "", setting: last.setting || "",
      lighting: last.lighting || "", prompt: "", promptEdited: false, trigger_tokens: last.trigger_tokens || [] });
    this.refreshCards();
    $(`.card[data-index="${this.scenes.length - 1}"] textarea[name=description]`, this.cardList).focus();
  }
}

// A file's bytes in base64, as the proto3 JSON mapping writes bytes.
async function base64(file) {
  const bytes = new Uint8Array(await file.arrayBuffer());
  let binary = "";
  for (let start = 0; start < bytes.length; start += 0x8000) {
    binary += String.fromCharCode(...bytes.subarray(start, start + 0x8000));
  }
  return btoa(binary);
}
