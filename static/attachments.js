// Attachments: the composer's files (chosen, dropped on the chat or pasted; each uploaded
// at once with a progress bar and a cancel button, then sent by id with the message) and
// the lightbox that opens images full size. Without this script the composer's file
// input posts the files with the form, and a thumbnail opens its image in a new tab.
(function () {
  "use strict";

  function csrfToken() {
    try {
      return JSON.parse(document.body.getAttribute("hx-headers") || "{}")["X-CSRF-Token"] || "";
    } catch (e) {
      return "";
    }
  }

  function megabytes(bytes) {
    return Math.round(bytes / 1e6) + " MB";
  }

  // --- the composer ------------------------------------------------------------------
  function setUp(form) {
    var box = form.querySelector(".attach");
    if (!box || box.getAttribute("data-ready") === "1") return;
    box.setAttribute("data-ready", "1");
    box.classList.add("js");
    var input = box.querySelector(".attach-input");
    var ids = box.querySelector("input[name=attachment_ids]");
    var list = box.querySelector(".attach-list");
    var maxBytes = Number(box.getAttribute("data-max-bytes")) || Infinity;
    var maxFiles = Number(box.getAttribute("data-max-files")) || 10;
    var items = [];

    function say(text) {
      var target = form.querySelector(".form-error");
      if (target) target.textContent = text;
    }

    function uploading() {
      return items.some(function (i) { return !i.id && !i.failed; });
    }

    function sync() {
      ids.value = items.filter(function (i) { return i.id; }).map(function (i) { return i.id; }).join(",");
      form.toggleAttribute("data-uploading", uploading());
    }

    function add(files) {
      say("");
      files.forEach(function (file) {
        if (items.length >= maxFiles) return say("At most " + maxFiles + " files per message.");
        if (file.size > maxBytes) return say(file.name + " is larger than " + megabytes(maxBytes) + ".");
        if (file.size === 0) return say(file.name + " is empty.");
        upload(file);
      });
    }

    function problem(xhr, file) {
      var detail = xhr.response && xhr.response.detail;
      if (Array.isArray(detail) && detail[0] && detail[0].msg) return detail[0].msg;
      if (typeof detail === "string") return detail;
      return "Could not upload " + file.name + (xhr.status ? " (" + xhr.status + ")." : ".");
    }

    function upload(file) {
      var item = { file: file };
      var li = document.createElement("li");
      li.className = "attach-item uploading";
      var name = document.createElement("span");
      name.className = "attach-name";
      name.textContent = file.name;
      var progress = document.createElement("progress");
      progress.max = 100;
      progress.value = 0;
      progress.setAttribute("aria-label", "Uploading " + file.name);
      var remove = document.createElement("button");
      remove.type = "button";
      remove.className = "attach-remove";
      remove.textContent = "✕";
      remove.setAttribute("aria-label", "Cancel " + file.name);
      li.append(name, progress, remove);
      list.appendChild(li);
      item.li = li;

      var xhr = new XMLHttpRequest();
      item.xhr = xhr;
      xhr.open("POST", "/api/attachments");
      xhr.setRequestHeader("X-CSRF-Token", csrfToken());
      xhr.responseType = "json";
      xhr.upload.addEventListener("progress", function (e) {
        if (e.lengthComputable) progress.value = Math.round((100 * e.loaded) / e.total);
      });
      xhr.addEventListener("load", function () {
        progress.remove();
        var stored = xhr.status === 201 && Array.isArray(xhr.response) && xhr.response[0];
        if (stored) {
          item.id = stored.id;
          li.classList.replace("uploading", "ready");
          li.setAttribute("data-id", stored.id);
          remove.setAttribute("aria-label", "Remove " + file.name);
          if (stored.thumbnail_url) {
            var preview = document.createElement("img");
            preview.className = "attach-preview";
            preview.src = stored.thumbnail_url;
            preview.alt = "";
            li.insertBefore(preview, name);
          }
        } else {
          item.failed = true;
          li.classList.replace("uploading", "failed");
          say(problem(xhr, file));
        }
        sync();
      });
      xhr.addEventListener("error", function () {
        progress.remove();
        item.failed = true;
        li.classList.replace("uploading", "failed");
        say("Could not reach the server to upload " + file.name + ".");
        sync();
      });
      remove.addEventListener("click", function () {
        discard(item);
      });
      var data = new FormData();
      data.append("file", file, file.name);
      xhr.send(data);
      items.push(item);
      sync();
    }

    // Cancels an upload in flight, or deletes one that is done but not sent.
    function discard(item) {
      if (!item.id && !item.failed) item.xhr.abort();
      if (item.id) {
        fetch("/api/attachments/" + item.id, {
          method: "DELETE",
          credentials: "same-origin",
          headers: { "X-CSRF-Token": csrfToken() },
        });
      }
      item.li.remove();
      items = items.filter(function (i) { return i !== item; });
      sync();
      input.focus();
    }

    input.addEventListener("change", function () {
      var files = Array.prototype.slice.call(input.files || []);
      // The files go up now; the form itself posts only their ids.
      input.value = "";
      add(files);
    });

    function hasFiles(e) {
      return e.dataTransfer && Array.prototype.indexOf.call(e.dataTransfer.types || [], "Files") >= 0;
    }
    var zone = form.closest(".chat") || form;
    zone.addEventListener("dragover", function (e) {
      if (!hasFiles(e)) return;
      e.preventDefault();
      zone.classList.add("dragover");
    });
    zone.addEventListener("dragleave", function (e) {
      if (!zone.contains(e.relatedTarget)) zone.classList.remove("dragover");
    });
    zone.addEventListener("drop", function (e) {
      if (!hasFiles(e)) return;
      e.preventDefault();
      zone.classList.remove("dragover");
      add(Array.prototype.slice.call(e.dataTransfer.files));
    });
    form.addEventListener("paste", function (e) {
      var files = Array.prototype.slice.call((e.clipboardData && e.clipboardData.files) || []);
      if (!files.length) return;
      e.preventDefault();
      add(files);
    });

    // Enter sends files without text too (app.js sends only when there is text).
    form.addEventListener("keydown", function (e) {
      if (e.key !== "Enter" || e.shiftKey || e.isComposing || e.target.tagName !== "TEXTAREA") return;
      if (e.target.value.trim() === "" && items.some(function (i) { return i.id; })) {
        e.preventDefault();
        form.requestSubmit();
      }
    });
    function holdWhileUploading(e) {
      if (!uploading()) return false;
      e.preventDefault();
      e.stopPropagation();
      say("Wait until the files have been uploaded.");
      return true;
    }
    form.addEventListener("submit", holdWhileUploading);
    form.addEventListener("htmx:beforeRequest", function (e) {
      if (e.detail.elt === form) holdWhileUploading(e);
    });
    form.addEventListener("htmx:afterRequest", function (e) {
      if (e.detail.elt !== form || !e.detail.successful) return;
      items.forEach(function (i) { i.li.remove(); });
      items = [];
      sync();
    });
  }

  function setUpAll() {
    document.querySelectorAll("form.composer").forEach(setUp);
  }
  document.addEventListener("DOMContentLoaded", setUpAll);
  document.addEventListener("htmx:afterSettle", setUpAll);

  // --- the lightbox ------------------------------------------------------------------
  var lightbox = null;
  var shown = null; // the thumbnail link being shown
  var opener = null; // where focus returns

  function images() {
    return Array.prototype.slice.call(document.querySelectorAll("a.attachment-image"));
  }

  function build() {
    lightbox = document.createElement("div");
    lightbox.className = "lightbox";
    lightbox.hidden = true;
    lightbox.setAttribute("role", "dialog");
    lightbox.setAttribute("aria-modal", "true");
    lightbox.setAttribute("aria-label", "Image viewer");
    lightbox.innerHTML =
      '<figure><img class="lightbox-image" alt=""><figcaption>' +
      '<span class="lightbox-name"></span><span class="lightbox-info"></span>' +
      '<a class="lightbox-download" download>Download</a></figcaption></figure>' +
      '<button type="button" class="lightbox-prev" aria-label="Previous image">‹</button>' +
      '<button type="button" class="lightbox-next" aria-label="Next image">›</button>' +
      '<button type="button" class="lightbox-close" aria-label="Close">✕</button>';
    lightbox.querySelector(".lightbox-prev").addEventListener("click", function () { step(-1); });
    lightbox.querySelector(".lightbox-next").addEventListener("click", function () { step(1); });
    lightbox.querySelector(".lightbox-close").addEventListener("click", close);
    lightbox.addEventListener("click", function (e) {
      if (e.target === lightbox) close();
    });
    document.body.appendChild(lightbox);
  }

  function show(link) {
    if (!lightbox) build();
    var all = images();
    shown = link;
    var img = lightbox.querySelector(".lightbox-image");
    img.src = link.getAttribute("href");
    img.alt = link.getAttribute("data-name") || "";
    lightbox.querySelector(".lightbox-name").textContent = link.getAttribute("data-name") || "";
    lightbox.querySelector(".lightbox-info").textContent =
      (all.indexOf(link) + 1) + " of " + all.length + " · " + (link.getAttribute("data-dimensions") || "");
    lightbox.querySelector(".lightbox-download").setAttribute("href", link.getAttribute("data-download"));
    var single = all.length < 2;
    lightbox.querySelector(".lightbox-prev").hidden = single;
    lightbox.querySelector(".lightbox-next").hidden = single;
    lightbox.hidden = false;
    document.body.classList.add("lightbox-open");
    lightbox.querySelector(".lightbox-close").focus();
  }

  // The previous or next image of the page (a live update may have replaced the link).
  function step(by) {
    var all = images();
    if (!all.length) return close();
    var href = shown && shown.getAttribute("href");
    var at = all.findIndex(function (a) { return a.getAttribute("href") === href; });
    show(all[(Math.max(at, 0) + by + all.length) % all.length]);
  }

  function close() {
    if (!lightbox || lightbox.hidden) return;
    lightbox.hidden = true;
    lightbox.querySelector(".lightbox-image").removeAttribute("src");
    document.body.classList.remove("lightbox-open");
    if (opener && document.contains(opener)) opener.focus();
  }

  document.addEventListener("click", function (e) {
    var link = e.target.closest && e.target.closest("a.attachment-image");
    if (!link || e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey) return;
    e.preventDefault();
    opener = link;
    show(link);
  });

  document.addEventListener("keydown", function (e) {
    if (!lightbox || lightbox.hidden) return;
    if (e.key === "Escape") {
      e.preventDefault();
      close();
    } else if (e.key === "ArrowLeft") {
      e.preventDefault();
      step(-1);
    } else if (e.key === "ArrowRight") {
      e.preventDefault();
      step(1);
    } else if (e.key === "Tab") {
      // Focus stays in the dialog.
      var focusable = Array.prototype.filter.call(
        lightbox.querySelectorAll("a[href], button"),
        function (el) { return !el.hidden; }
      );
      var first = focusable[0];
      var last = focusable[focusable.length - 1];
      if (e.shiftKey && document.activeElement === first) {
        e.preventDefault();
        last.focus();
      } else if (!e.shiftKey && document.activeElement === last) {
        e.preventDefault();
        first.focus();
      }
    }
  });
})();
