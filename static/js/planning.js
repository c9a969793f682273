// The plan form (templates/deployments/_plan_form.html), driven by data attributes; listeners
// are delegated on document so they keep working after htmx swaps the form in again.
// - [data-show-for="canary linear"]: shown only for those strategies (the server does the same
//   on its first render, and sends only the inputs in use);
// - [data-show-for-placement="new_servers"]: shown only for that placement;
// - the Start button reads "Schedule deployment" once a start time is set;
// - [data-local-time]: the start time (UTC) in the browser's own time zone;
// - a preview shown above goes stale as soon as the form changes.
(function () {
  "use strict";

  function planForm(el) {
    return el instanceof Element ? el.closest("[data-plan-form]") : null;
  }

  function sync(form) {
    const strategy = form.elements.namedItem("strategy");
    const chosen = strategy ? strategy.value : "";
    form.querySelectorAll("[data-show-for]").forEach(function (el) {
      el.hidden = !el.getAttribute("data-show-for").split(/\s+/).includes(chosen);
    });
    const placement = form.querySelector('input[name="placement"]:checked');
    form.querySelectorAll("[data-show-for-placement]").forEach(function (el) {
      el.hidden = !placement || el.getAttribute("data-show-for-placement") !== placement.value;
    });
    const start = form.elements.namedItem("start_at");
    const when = start && start.value ? start.value : "";
    const button = form.querySelector("[data-start-button]");
    if (button) button.textContent = when ? "Schedule deployment" : "Start deployment";
    const local = form.querySelector("[data-local-time]");
    if (local) {
      const moment = when ? new Date(when + "Z") : null;
      local.textContent = moment && !Number.isNaN(moment.getTime())
        ? "That is " + moment.toLocaleString([], { dateStyle: "medium", timeStyle: "short" }) + " your time."
        : "";
    }
  }

  function markStale(form) {
    const section = form.closest("#plan");
    const preview = section && section.querySelector(".plan-preview");
    if (!preview) return;
    preview.classList.add("plan-stale-now");
    const note = section.querySelector("[data-plan-stale]");
    if (note) note.hidden = false;
  }

  function onChange(event) {
    const form = planForm(event.target);
    if (!form) return;
    sync(form);
    markStale(form);
  }
  document.addEventListener("input", onChange);
  document.addEventListener("change", onChange);

  function syncAll(root) {
    const scope = root instanceof Element || root instanceof Document ? root : document;
    if (scope instanceof Element && scope.matches("[data-plan-form]")) sync(scope);
    scope.querySelectorAll("[data-plan-form]").forEach(sync);
  }
  document.addEventListener("DOMContentLoaded", function () { syncAll(document); });
  document.addEventListener("htmx:load", function (event) { syncAll(event.target); });
})();
