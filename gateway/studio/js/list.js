// The caller's storyboards, newest first, each with its first frame as a thumbnail; open one to watch or fix it.

import { api, fileBlob } from "./api.js";
import { clear, el, stateName } from "./dom.js";

export class ListView {
  constructor(root) {
    this.root = root;
    this.urls = [];
  }

  close() {
    this.urls.forEach((url) => URL.revokeObjectURL(url));
  }

  async render() {
    this.list = el("ul", { class: "storyboards" });
    this.more = el("button", { type: "button", text: "Show more", hidden: true, onclick: () => this.page(this.next) });
    this.error = el("p", { class: "error", role: "alert" });
    clear(this.root).append(el("h1", { text: "Storyboards" }), this.error, this.list, this.more);
    await this.page("");
  }

  async page(token) {
    try {
      const { storyboards = [], next_page_token: next = "" } = await api.list(token);
      if (!storyboards.length && !token) {
        this.list.replaceWith(el("p", { class: "hint", text: "No storyboards yet." },
          " ", el("a", { href: "#/", text: "Write one" })));
      }
      this.list.append(...storyboards.map((storyboard) => this.item(storyboard)));
      this.next = next;
      this.more.hidden = !next;
    } catch (error) {
      this.error.textContent = error.message;
    }
  }

  item(storyboard) {
    const story = storyboard.spec?.story || storyboard.plan?.story || "(no story)";
    const frames = storyboard.frames || [];
    const done = frames.filter((frame) => frame.rendered).length;
    const thumbnail = el("div", { class: "thumb" });
    if (frames[0]?.rendered) {
      fileBlob(storyboard.id, "frames/1").then((blob) => {
        const url = URL.createObjectURL(blob);
        this.urls.push(url);
        thumbnail.append(el("img", { src: url, alt: `First frame of: ${story}` }));
      }).catch(() => {});
    }
    const created = storyboard.create_time ? new Date(storyboard.create_time).toLocaleString() : "";
    return el("li", {},
      el("a", { href: `#/storyboards/${encodeURIComponent(storyboard.id)}`, class: "storyboard-link" },
        thumbnail,
        el("span", { class: "story", text: story }),
        el("span", { class: "meta", text: `${stateName(storyboard.state)} · ${done}/${frames.length} frames · ${created}` })));
  }
}
