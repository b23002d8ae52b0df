/** Message banner: visible only when there is a message; text only, never HTML. */
import { h, setText } from "../dom";
import type { Message } from "../types";

export interface MessageView {
  readonly el: HTMLElement;
  show(message: Message | null): void;
}

export function createMessage(): MessageView {
  const text = h("span", { class: "cv-message-text" });
  const el = h(
    "div",
    { class: "cv-message", "data-testid": "message", "data-level": "info", hidden: true },
    text,
  );
  return {
    el,
    show(message) {
      const valid =
        message !== null &&
        typeof message === "object" &&
        typeof message.text === "string" &&
        message.text !== "";
      if (!valid) {
        el.hidden = true;
        el.removeAttribute("role");
        setText(text, "");
        return;
      }
      const level = message.level === "error" ? "error" : "info";
      el.dataset.level = level;
      el.setAttribute("role", level === "error" ? "alert" : "status");
      setText(text, message.text);
      el.hidden = false;
    },
  };
}
