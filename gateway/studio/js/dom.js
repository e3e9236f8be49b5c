// Building the page from data without ever parsing it as HTML: every text goes in as a text node, so a story that
// reads like markup shows as what it is.

export function el(tag, attributes = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === undefined || value === null || value === false) continue;
    if (name === "class") element.className = value;
    else if (name === "text") element.textContent = value;
    else if (name === "value") element.value = value; // a textarea's text is its value, not an attribute
    else if (name.startsWith("on")) element.addEventListener(name.slice(2), value);
    else if (name in element && typeof value !== "string") element[name] = value;
    else element.setAttribute(name, value === true ? "" : value);
  }
  element.append(...children.flat().filter((child) => child !== null && child !== undefined && child !== false));
  return element;
}

export function clear(element) {
  element.replaceChildren();
  return element;
}

export function $(selector, root = document) {
  return root.querySelector(selector);
}

// Status words for people: "RENDERING" for STORYBOARD_STATE_RENDERING, "low consistency" for VERDICT_LOW_CONSISTENCY.
export function stateName(state) {
  return (state || "STORYBOARD_STATE_QUEUED").replace("STORYBOARD_STATE_", "").toLowerCase();
}

export function verdictName(verdict) {
  return (verdict || "").replace("VERDICT_", "").replaceAll("_", " ").toLowerCase();
}

// Saves a Blob under a file name, as a download the browser asks about like any other.
export function saveBlob(blob, fileName) {
  const url = URL.createObjectURL(blob);
  const link = el("a", { href: url, download: fileName, hidden: true });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60_000);
}
