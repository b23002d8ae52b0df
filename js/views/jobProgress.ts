/**
 * Progress of a background job (`overlay_job`, `compare_job`, `atlas_job`, `field_job` or
 * `why_class_job`): a bar, a line of text and a Stop
 * button that asks the kernel to cancel (custom message `{type: "cancel", job: <job trait>}`).
 * `testid` names its elements: `<testid>-progress`, `<testid>-cancel`.
 */
import { h, setText } from "../dom";
import { jobView } from "../jobs";
import type { ExplorerModel, View } from "../types";

export function createJobProgress(
  model: ExplorerModel,
  trait: "overlay_job" | "compare_job" | "atlas_job" | "field_job" | "why_class_job",
  testid: "cam" | "compare" | "atlas" | "field" | "why",
): View {
  const bar = h("progress", { class: "cv-job-bar", max: 1, value: 0 });
  const text = h("span", { class: "cv-job-text" });
  const stop = h(
    "button",
    { class: "cv-button cv-job-stop", type: "button", "data-testid": `${testid}-cancel` },
    "Stop",
  );
  const el = h(
    "div",
    { class: "cv-job", "data-testid": `${testid}-progress`, "data-state": "idle", hidden: true },
    bar,
    text,
    stop,
  );
  let stopAsked = -1; // id of the job a Stop was sent for: the button stays off for it
  stop.addEventListener("click", () => {
    stopAsked = jobView(model.get(trait)).id;
    stop.disabled = true;
    model.send({ type: "cancel", job: trait });
  });
  return {
    el,
    update() {
      const job = jobView(model.get(trait));
      el.hidden = job.state === "idle" || job.state === "done";
      el.dataset.state = job.state;
      el.dataset.job = String(job.id);
      el.dataset.fraction = job.fraction.toFixed(3);
      bar.value = job.fraction;
      setText(text, job.text);
      stop.hidden = !job.running;
      stop.disabled = job.running && job.id === stopAsked;
    },
  };
}
