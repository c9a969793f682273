// Registry forms: the tensor editor's rows and the version upload's progress bar. Driven by data
// attributes; listeners are delegated on document, so a form swapped in after an error works too.
(function () {
  "use strict";

  // <fieldset data-tensor-editor="inputs">: rows post as inputs-<i>-name|data_type|dims. New rows
  // come from its <template data-tensor-template>, whose names hold "__i__" for the index.
  function nextIndex(editor) {
    let next = 0;
    editor.querySelectorAll("[data-tensor-rows] [name]").forEach(function (el) {
      const match = /-(\d+)-[a-z_]+$/.exec(el.getAttribute("name"));
      if (match) next = Math.max(next, Number(match[1]) + 1);
    });
    return next;
  }

  function addRow(editor) {
    const template = editor.querySelector("template[data-tensor-template]");
    const rows = editor.querySelector("[data-tensor-rows]");
    if (!template || !rows) return;
    const index = String(nextIndex(editor));
    const fragment = template.content.cloneNode(true);
    fragment.querySelectorAll("[name]").forEach(function (el) {
      el.setAttribute("name", el.getAttribute("name").replace("__i__", index));
    });
    const row = fragment.querySelector("tr");
    rows.appendChild(fragment);
    const first = row && row.querySelector("input");
    if (first) first.focus();
  }

  function removeRow(button) {
    const row = button.closest("[data-tensor-row]");
    if (!row) return;
    if (row.parentElement.querySelectorAll("[data-tensor-row]").length > 1) {
      row.remove();
      return;
    }
    // the last row stays, emptied: an editor without rows has nowhere to type
    row.querySelectorAll("input").forEach(function (input) { input.value = ""; });
  }

  document.addEventListener("click", function (event) {
    const target = event.target instanceof Element ? event.target : null;
    if (!target) return;
    const add = target.closest("[data-tensor-add]");
    if (add) {
      const editor = add.closest("[data-tensor-editor]");
      if (editor) addRow(editor);
      return;
    }
    const remove = target.closest("[data-tensor-remove]");
    if (remove) removeRow(remove);
  });

  // <form data-upload-progress>: posts the same multipart form with XMLHttpRequest (fetch reports
  // no upload progress) and shows it in [data-upload-bar]. The server answers JSON {location} on
  // success, or the page with the form and its errors (4xx), whose form replaces this one.
  function showProgress(form, percent, text) {
    const status = form.querySelector("[data-upload-status]");
    const bar = form.querySelector("[data-upload-bar]");
    const label = form.querySelector("[data-upload-text]");
    if (status) status.hidden = false;
    if (bar && percent !== null) bar.value = percent;
    if (label) label.textContent = text;
  }

  function swapForm(form, html) {
    const doc = new DOMParser().parseFromString(html, "text/html");
    const fresh = form.id ? doc.getElementById(form.id) : null;
    if (!fresh) return false;
    form.replaceWith(document.importNode(fresh, true));
    return true;
  }

  document.addEventListener("submit", function (event) {
    const form = event.target;
    if (!(form instanceof HTMLFormElement) || !form.hasAttribute("data-upload-progress")) return;
    if (event.defaultPrevented || typeof FormData === "undefined") return;
    event.preventDefault();
    const button = form.querySelector("button[type=submit]");
    if (button) button.disabled = true;
    // errors of the last attempt no longer apply; the server's answer brings the new ones
    form.querySelectorAll(".field-error, .form-errors").forEach(function (el) { el.remove(); });
    form.querySelectorAll("[aria-invalid]").forEach(function (el) { el.removeAttribute("aria-invalid"); });
    form.querySelectorAll(".invalid").forEach(function (el) { el.classList.remove("invalid"); });
    const xhr = new XMLHttpRequest();
    xhr.open("POST", form.action);
    xhr.setRequestHeader("X-Requested-With", "XMLHttpRequest");
    showProgress(form, 0, "0%");
    xhr.upload.addEventListener("progress", function (e) {
      if (!e.lengthComputable || e.total === 0) return;
      const percent = Math.floor((e.loaded / e.total) * 100);
      showProgress(form, percent, percent + "%");
    });
    xhr.upload.addEventListener("load", function () {
      showProgress(form, 100, "100%, registering…");
    });
    xhr.addEventListener("load", function () {
      const type = xhr.getResponseHeader("Content-Type") || "";
      if (xhr.status < 300 && type.indexOf("application/json") === 0) {
        window.location.assign(JSON.parse(xhr.responseText).location);
      } else if (xhr.status >= 400 && swapForm(form, xhr.responseText)) {
        // the server's errors now sit next to their fields
      } else if (xhr.status < 300 && xhr.responseURL) {
        window.location.assign(xhr.responseURL); // e.g. a redirect to the sign-in page
      } else {
        showProgress(form, null, "The upload failed (HTTP " + xhr.status + ").");
        if (button) button.disabled = false;
      }
    });
    xhr.addEventListener("error", function () {
      showProgress(form, null, "The upload failed: the connection broke.");
      if (button) button.disabled = false;
    });
    xhr.send(new FormData(form));
  });
})();
