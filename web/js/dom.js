// A few DOM helpers: the page builds its elements with these, never with innerHTML, so no
// published data can ever become markup.

/** Create an element: h("li", { class: "x", dataset: { a: "1" } }, "text", child). */
export function h(tag, attributes = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === null || value === undefined || value === false) continue;
    if (name === "dataset") Object.assign(element.dataset, value);
    else if (name === "class") element.className = value;
    else if (name.startsWith("on")) element.addEventListener(name.slice(2), value);
    else element.setAttribute(name, value === true ? "" : String(value));
  }
  element.append(...children.filter((child) => child !== null && child !== undefined));
  return element;
}

/** The element with this id; a missing one is a bug in index.html, so say which. */
export function byId(id) {
  const element = document.getElementById(id);
  if (element === null) throw new Error(`index.html has no #${id}`);
  return element;
}

/** "14:03:09.250" in the viewer's time zone. */
export function clockTime(date) {
  const pad = (n, width = 2) => String(n).padStart(width, "0");
  return `${pad(date.getHours())}:${pad(date.getMinutes())}:${pad(date.getSeconds())}.${pad(date.getMilliseconds(), 3)}`;
}

/** Show a message in an alert paragraph, or hide it with null. */
export function say(element, text) {
  element.textContent = text ?? "";
  element.hidden = !text;
}
