// The studio's shell: the API key (kept in this tab's session storage), and which view the address shows:
// #/ writes a new storyboard, #/storyboards lists them, #/storyboards/<id> shows one.

import { apiKey, onUnauthorized, setApiKey } from "./api.js";
import { BoardView } from "./board.js";
import { $ } from "./dom.js";
import { ListView } from "./list.js";
import { WriteView } from "./write.js";

const main = $("#main");
const keyForm = $("#key-form");
const keyInput = $("#api-key");
const keyState = $("#key-state");
let view = null;

function showKeyState(message = "") {
  keyState.textContent = message || (apiKey() ? "key set for this tab" : "no key");
}

keyForm.addEventListener("submit", (event) => {
  event.preventDefault();
  setApiKey(keyInput.value.trim());
  keyInput.value = "";
  showKeyState();
  route();
});
$("#forget-key").addEventListener("click", () => {
  setApiKey("");
  showKeyState();
});
onUnauthorized((error) => {
  showKeyState(`this gateway needs a valid API key: ${error.message}`);
  keyForm.classList.add("attention");
  keyInput.focus();
});

function route() {
  if (view && view.close) view.close();
  keyForm.classList.remove("attention");
  const path = location.hash.replace(/^#/, "") || "/";
  const match = /^\/storyboards\/([^/]+)$/.exec(path);
  document.querySelectorAll("nav a").forEach((link) => {
    const current = link.getAttribute("href") === `#${path}` || (match && link.getAttribute("href") === "#/storyboards");
    if (current) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  });
  if (match) {
    view = new BoardView(main);
    view.open(decodeURIComponent(match[1]));
    document.title = "Storyboard · studio";
  } else if (path === "/storyboards") {
    view = new ListView(main);
    view.render();
    document.title = "Storyboards · studio";
  } else {
    view = new WriteView(main, { onCreated: (id) => { location.hash = `#/storyboards/${encodeURIComponent(id)}`; } });
    view.render();
    document.title = "New storyboard · studio";
  }
}

window.addEventListener("hashchange", route);
showKeyState();
route();
