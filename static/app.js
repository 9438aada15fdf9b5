// messenger's own page behaviour: small, and only what htmx does not do by itself.
// Works without it: every form also posts and redirects.
(function () {
  "use strict";

  function csrfToken() {
    try {
      return JSON.parse(document.body.getAttribute("hx-headers") || "{}")["X-CSRF-Token"] || "";
    } catch (e) {
      return "";
    }
  }

  // A random UUID (v4). crypto.randomUUID exists only in secure contexts (HTTPS or
  // localhost); crypto.getRandomValues exists everywhere.
  function newClientKey() {
    if (window.crypto && crypto.randomUUID) {
      try {
        return crypto.randomUUID();
      } catch (e) {
        // fall through
      }
    }
    var bytes = new Uint8Array(16);
    crypto.getRandomValues(bytes);
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    var hex = Array.prototype.map.call(bytes, function (b) {
      return (b + 0x100).toString(16).slice(1);
    }).join("");
    return hex.slice(0, 8) + "-" + hex.slice(8, 12) + "-" + hex.slice(12, 16) + "-" +
      hex.slice(16, 20) + "-" + hex.slice(20);
  }

  function post(url, fields) {
    var body = new URLSearchParams(fields || {});
    return fetch(url, {
      method: "POST",
      credentials: "same-origin",
      headers: { "X-CSRF-Token": csrfToken(), "Content-Type": "application/x-www-form-urlencoded" },
      body: body,
    });
  }

  // --- the live stream: resume from the last event this page applied ----------------
  // Each event's `id:` is its position in the user's stream of events (commit order; the
  // fragment of an event comes last and alone carries it). The browser resumes by itself
  // from the last id it received (Last-Event-ID) when a connection breaks; when the
  // EventSource fails for good (an error status), htmx's SSE extension makes a new one
  // from the page's URL, so that URL must carry the last id this page applied: the one
  // rendered into it is only where the page started.
  var lastEventId = null;
  function eventId(message) {
    var id = message && message.lastEventId ? Number(message.lastEventId) : NaN;
    return isFinite(id) ? id : null;
  }
  function noteId(id) {
    if (id !== null && (lastEventId === null || id > lastEventId)) lastEventId = id;
  }
  if (window.htmx) {
    htmx.createEventSource = function (url) {
      if (lastEventId !== null) {
        url = url.replace(/([?&]last_event_id=)\d+/, "$1" + lastEventId);
      }
      return new EventSource(url, { withCredentials: true });
    };
  }
  // Fragments: each applied once, whatever a resume sends again.
  var appliedUpTo = null;
  document.addEventListener("htmx:sseBeforeMessage", function (e) {
    var message = e.detail;
    var id = eventId(message);
    if (message && message.type === "oob" && id !== null) {
      if (appliedUpTo !== null && id <= appliedUpTo) {
        e.preventDefault();
        return;
      }
      appliedUpTo = id;
    }
    noteId(id);
    if (message && message.type === "reset") location.reload();
  });
  // Triggers (hx-trigger="sse:…"): a repeated one only fetches again.
  document.addEventListener("htmx:sseMessage", function (e) {
    noteId(eventId(e.detail));
  });

  // --- message lists: one copy of each message, grouping, days, local times ----------
  function localize(root) {
    root.querySelectorAll("time[datetime]:not([data-local])").forEach(function (t) {
      var d = new Date(t.getAttribute("datetime"));
      if (isNaN(d)) return;
      t.textContent = d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
      t.title = d.toLocaleString();
      t.setAttribute("data-local", "");
    });
  }

  function decorate(list) {
    var seen = {};
    list.querySelectorAll("li.message").forEach(function (li) {
      if (seen[li.id]) li.remove();
      else seen[li.id] = true;
    });
    list.querySelectorAll("li.day").forEach(function (li) { li.remove(); });
    var lastDay = null, lastSender = null, lastTime = 0;
    list.querySelectorAll("li.message").forEach(function (li) {
      var t = li.querySelector("time[datetime]");
      var d = t ? new Date(t.getAttribute("datetime")) : null;
      if (d && !isNaN(d)) {
        var day = d.toDateString();
        if (day !== lastDay) {
          var sep = document.createElement("li");
          sep.className = "day";
          sep.setAttribute("role", "separator");
          sep.textContent = d.toLocaleDateString([], { weekday: "long", year: "numeric", month: "long", day: "numeric" });
          li.before(sep);
          lastDay = day;
          lastSender = null;
        }
        var sender = li.getAttribute("data-sender");
        li.classList.toggle("grouped", sender === lastSender && d - lastTime < 5 * 60 * 1000);
        lastSender = sender;
        lastTime = d;
      }
    });
    localize(list);
  }

  function nearBottom(el) {
    return el.scrollHeight - el.scrollTop - el.clientHeight < 120;
  }

  function markSeen(list) {
    var chat = list.closest("[data-path]");
    var last = list.querySelector("li.message:last-of-type");
    if (!chat || !last || last.classList.contains("mine") || document.visibilityState !== "visible") return;
    var id = last.getAttribute("data-id");
    if (list.getAttribute("data-seen-up-to") === id) return;
    list.setAttribute("data-seen-up-to", id);
    post(chat.getAttribute("data-path") + "/seen", { message_id: id });
  }

  function refreshLists() {
    document.querySelectorAll("ol.messages").forEach(function (list) {
      var stick = nearBottom(list) || list.getAttribute("data-ready") !== "1";
      decorate(list);
      if (stick) list.scrollTop = list.scrollHeight;
      list.setAttribute("data-ready", "1");
      markSeen(list);
    });
    localize(document);
  }

  document.addEventListener("DOMContentLoaded", refreshLists);
  document.addEventListener("htmx:afterSettle", refreshLists);
  document.addEventListener("htmx:oobAfterSwap", function (e) {
    refreshLists();
    var target = e.detail && e.detail.target;
    if (target && target.id && target.id.indexOf("typing-") === 0) hideTypingLater(target.id);
  });
  document.addEventListener("visibilitychange", refreshLists);

  // --- typing: report at most every 3 s; hide others' line after 5 s of silence ------
  var typingTimers = {};
  function hideTypingLater(id) {
    clearTimeout(typingTimers[id]);
    typingTimers[id] = setTimeout(function () {
      var el = document.getElementById(id);
      if (el) el.textContent = "";
    }, 5000);
  }
  var lastTypingReport = 0;
  document.addEventListener("input", function (e) {
    var form = e.target.closest && e.target.closest("form[data-typing-url]");
    if (!form || Date.now() - lastTypingReport < 3000) return;
    lastTypingReport = Date.now();
    post(form.getAttribute("data-typing-url"));
  });

  // --- composer: Enter sends, Shift+Enter adds a line; clear and refocus on success ---
  document.addEventListener("keydown", function (e) {
    if (e.key !== "Enter" || e.shiftKey || e.isComposing) return;
    var form = e.target.closest && e.target.closest("form.composer");
    if (!form || e.target.tagName !== "TEXTAREA") return;
    e.preventDefault();
    if (e.target.value.trim() !== "") form.requestSubmit();
  });
  document.addEventListener("htmx:beforeRequest", function (e) {
    var form = e.detail.elt;
    if (form && form.classList && form.classList.contains("composer")) {
      // A second Enter while the first send is in flight must not post twice.
      if (form.getAttribute("data-sending") === "1") e.preventDefault();
      else form.setAttribute("data-sending", "1");
    }
  });
  document.addEventListener("htmx:afterRequest", function (e) {
    var form = e.detail.elt;
    if (!form || !form.classList) return;
    if (form.classList.contains("composer")) {
      form.removeAttribute("data-sending");
      if (e.detail.successful) {
        var input = form.querySelector("textarea");
        input.value = "";
        input.focus();
        // A fresh idempotency key for the next message; a failed send keeps its key, so
        // that sending it again cannot post it twice.
        var key = form.querySelector("input[name=client_key]");
        if (key) key.value = newClientKey();
        var error = form.querySelector(".form-error");
        if (error) error.textContent = "";
        lastTypingReport = 0;
      }
    }
  });

  // --- errors of htmx requests: shown next to the form that failed ------------------
  function showError(elt, text) {
    var form = elt && elt.closest ? elt.closest("form") : null;
    var target = (form && form.querySelector(".form-error")) || document.getElementById("flash");
    if (!target) return;
    target.textContent = text;
    target.classList.add("alert");
  }
  document.addEventListener("htmx:responseError", function (e) {
    var text = (e.detail.xhr && e.detail.xhr.responseText) || "Something went wrong.";
    showError(e.detail.elt, text.length > 300 ? "Something went wrong." : text);
  });
  document.addEventListener("htmx:sendError", function (e) {
    showError(e.detail.elt, "Could not reach the server. Check your connection and try again.");
  });
})();
