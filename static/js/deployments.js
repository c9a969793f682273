// Deployment pages (see static/css/deployments.css): behaviour from data attributes only.
//
// The live part of a deployment's page ([data-live-poll]) is replaced by htmx every second. While
// one of its dialogs is open (an action being confirmed), the refresh waits: a swap would close
// the dialog and drop the reason being typed. A refused action comes back with its dialog marked
// data-show-modal; it opens again, its errors by the fields.
(function () {
  "use strict";

  function openDialogIn(root) {
    return root instanceof Element && root.querySelector("dialog[open]") !== null;
  }

  function isPoller(element) {
    return element instanceof Element && element.hasAttribute("data-live-poll");
  }

  // The refresh itself: skipped while a dialog inside is open.
  document.addEventListener("htmx:beforeRequest", function (event) {
    const elt = event.detail && event.detail.elt;
    if (isPoller(elt) && openDialogIn(elt)) event.preventDefault();
  });

  // A refresh that left before a dialog opened: its answer must not replace the open dialog.
  document.addEventListener("htmx:beforeSwap", function (event) {
    const detail = event.detail || {};
    const elt = detail.requestConfig && detail.requestConfig.elt;
    if (isPoller(elt) && openDialogIn(detail.target)) detail.shouldSwap = false;
  });

  // [data-keep-scroll] boxes (the history) keep where they were scrolled to across refreshes.
  let scrolled = {};
  document.addEventListener("htmx:beforeSwap", function (event) {
    const target = event.detail && event.detail.target;
    if (!isPoller(target)) return;
    scrolled = {};
    target.querySelectorAll("[data-keep-scroll][id]").forEach(function (box) {
      scrolled[box.id] = box.scrollTop;
    });
  });
  document.addEventListener("htmx:afterSwap", function () {
    Object.keys(scrolled).forEach(function (id) {
      const box = document.getElementById(id);
      if (box) box.scrollTop = scrolled[id];
    });
    scrolled = {};
  });

  function showRefused(root) {
    if (!(root instanceof Element)) return;
    const dialogs = root.matches("dialog[data-show-modal]") ? [root] : root.querySelectorAll("dialog[data-show-modal]");
    dialogs.forEach(function (dialog) {
      if (dialog instanceof HTMLDialogElement && !dialog.open && dialog.isConnected) dialog.showModal();
    });
  }
  document.addEventListener("htmx:load", function (event) {
    showRefused(event.target);
  });
})();
