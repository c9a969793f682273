// Switchyard's page behaviour, driven by data attributes. The CSP forbids inline scripts, so
// templates never carry code: user text sits only in (autoescaped) data attributes and reaches
// confirm()/prompt() as a plain string. Listeners are delegated on document, so they also cover
// content htmx swaps in.
(function () {
  "use strict";

  // <form data-confirm="Remove x?">: cancel stops the submit.
  // <form data-reason-prompt="Delete x? Give a reason:">: the answer goes into the form's
  // "reason" field; cancelled or blank stops the submit.
  document.addEventListener("submit", function (event) {
    const form = event.target;
    if (!(form instanceof HTMLFormElement)) return;
    const question = form.getAttribute("data-confirm");
    if (question !== null && !window.confirm(question)) {
      event.preventDefault();
      return;
    }
    const ask = form.getAttribute("data-reason-prompt");
    if (ask !== null) {
      const answer = window.prompt(ask);
      if (answer === null || answer.trim() === "") {
        event.preventDefault();
        return;
      }
      form.elements.namedItem("reason").value = answer;
    }
  });

  document.addEventListener("click", function (event) {
    const target = event.target instanceof Element ? event.target : null;
    if (!target) return;
    // <button data-open-dialog="id"> opens that <dialog> as a modal.
    const opener = target.closest("[data-open-dialog]");
    if (opener) {
      const dialog = document.getElementById(opener.getAttribute("data-open-dialog"));
      if (dialog instanceof HTMLDialogElement) dialog.showModal();
      return;
    }
    // <button data-close-dialog> closes the dialog it sits in.
    const closer = target.closest("[data-close-dialog]");
    if (closer) {
      const dialog = closer.closest("dialog");
      if (dialog) dialog.close();
      return;
    }
    // <button data-copy-from="id"> copies that element's text.
    const copier = target.closest("[data-copy-from]");
    if (copier) {
      const source = document.getElementById(copier.getAttribute("data-copy-from"));
      if (source && navigator.clipboard) navigator.clipboard.writeText(source.textContent);
    }
  });

  // <dialog data-show-modal>: a refused form inside it comes back open, errors by its fields.
  document.querySelectorAll("dialog[data-show-modal]").forEach(function (dialog) {
    if (dialog instanceof HTMLDialogElement && !dialog.open) dialog.showModal();
  });

  // <select data-mirror="[data-to]" data-mirror-prefix="v">: shows the chosen value in that
  // element of the same form.
  document.addEventListener("change", function (event) {
    const select = event.target;
    if (!(select instanceof HTMLSelectElement) || !select.hasAttribute("data-mirror")) return;
    const form = select.closest("form");
    const shown = form && form.querySelector(select.getAttribute("data-mirror"));
    if (shown) shown.textContent = (select.getAttribute("data-mirror-prefix") || "") + select.value;
  });

  // data-width / data-left (percent): sizes that vary per row. Style attributes are blocked by
  // the CSP; setting them through the CSSOM is not.
  function percent(value) {
    const n = Number(value);
    return Number.isFinite(n) ? Math.min(Math.max(n, 0), 100) + "%" : null;
  }
  function applySizes(root) {
    root.querySelectorAll("[data-width], [data-left]").forEach(function (el) {
      const width = percent(el.getAttribute("data-width"));
      const left = percent(el.getAttribute("data-left"));
      if (el.hasAttribute("data-width") && width !== null) el.style.width = width;
      if (el.hasAttribute("data-left") && left !== null) el.style.left = left;
    });
  }
  applySizes(document);
  document.addEventListener("htmx:load", function (event) {
    applySizes(event.target);
  });
})();
