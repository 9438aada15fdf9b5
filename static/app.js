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
  // Times: every time[datetime] in the viewer's own zone and locale, in pages, fragments
  // and live inserts alike. The server writes UTC labels for pages read without JavaScript.
  var DAY = 24 * 60 * 60 * 1000;
  function sameDay(a, b) {
    return a.toDateString() === b.toDateString();
  }
  function clockLabel(d) {
    return d.toLocaleTimeString([], { hour: "numeric", minute: "2-digit" });
  }
  // The chats list: the time today, the weekday this week, else the date.
  function listLabel(d) {
    var now = new Date();
    if (sameDay(d, now)) return clockLabel(d);
    if (now - d < 6 * DAY) return d.toLocaleDateString([], { weekday: "short" });
    if (d.getFullYear() === now.getFullYear()) return d.toLocaleDateString([], { month: "short", day: "numeric" });
    return d.toLocaleDateString([], { year: "numeric", month: "short", day: "numeric" });
  }
  function dayLabel(d) {
    var now = new Date();
    if (sameDay(d, now)) return "Today";
    if (sameDay(d, new Date(now.getTime() - DAY))) return "Yesterday";
    return d.toLocaleDateString([], { weekday: "long", year: "numeric", month: "long", day: "numeric" });
  }
  function localize(root) {
    root.querySelectorAll("time[datetime]:not([data-local])").forEach(function (t) {
      var d = new Date(t.getAttribute("datetime"));
      if (isNaN(d)) return;
      t.textContent = t.getAttribute("data-format") === "list" ? listLabel(d) : clockLabel(d);
      t.title = d.toLocaleString([], { dateStyle: "full", timeStyle: "short" });
      t.setAttribute("data-local", "");
    });
  }

  function messageId(li) {
    return Number(li.getAttribute("data-id")) || 0;
  }

  // One copy of each message; a divider where a day begins; a sender's messages within
  // five minutes grouped under one name and time. Runs after every live insert, so it
  // touches the DOM only where something changed: a list of thousands of messages costs
  // a walk in JavaScript, not a re-layout of every row.
  function sentAt(li) {
    if (li._sentAt === undefined) {
      var t = li.querySelector(".meta time[datetime]");
      var d = t ? new Date(t.getAttribute("datetime")) : null;
      li._sentAt = d && !isNaN(d) ? d : null;
    }
    return li._sentAt;
  }
  var decoratePass = 0;
  function decorate(list) {
    var pass = ++decoratePass;
    var ids = {};
    var lastDay = null, lastSender = null, lastTime = 0;
    list.querySelectorAll("li.message, li.unread-divider").forEach(function (li) {
      if (li.classList.contains("unread-divider")) {
        lastSender = null;
        return;
      }
      if (ids[li.id]) {
        li.remove();
        return;
      }
      ids[li.id] = true;
      var d = sentAt(li);
      if (!d) return;
      var day = d.toDateString();
      if (day !== lastDay) {
        var sep = li.previousElementSibling;
        if (!sep || !sep.classList.contains("day") || sep._day !== day) {
          sep = document.createElement("li");
          sep.className = "day";
          sep._day = day;
          sep.textContent = dayLabel(d);
          li.before(sep);
        }
        sep._pass = pass;
        lastDay = day;
        lastSender = null;
      }
      var sender = li.getAttribute("data-sender");
      var grouped = sender === lastSender && d - lastTime < 5 * 60 * 1000;
      if (li.classList.contains("grouped") !== grouped) li.classList.toggle("grouped", grouped);
      lastSender = sender;
      lastTime = d;
    });
    list.querySelectorAll("li.day").forEach(function (li) {
      if (li._pass !== pass) li.remove();
    });
    localize(list);
    rovingMessages(list);
  }

  function atBottom(list) {
    return list.scrollHeight - list.scrollTop - list.clientHeight < 40;
  }
  function scrollToBottom(list) {
    list.scrollTop = list.scrollHeight;
    list._stick = true;
    hideJump(list);
  }
  function jumpButton(list) {
    return list.parentNode && list.parentNode.querySelector(".jump-new");
  }
  function hideJump(list) {
    list._unseen = 0;
    var button = jumpButton(list);
    if (button) button.hidden = true;
  }
  function showJump(list, fresh) {
    list._unseen = (list._unseen || 0) + fresh;
    var button = jumpButton(list);
    if (!button) return;
    button.querySelector(".jump-count").textContent = list._unseen;
    button.setAttribute("aria-label", "Jump to " + list._unseen + " new message" + (list._unseen === 1 ? "" : "s"));
    button.hidden = false;
  }

  // Marks the conversation read up to its newest message, when the reader can see it.
  function markSeen(list) {
    var chat = list.closest("[data-path]");
    var messages = list.querySelectorAll("li.message");
    var last = messages[messages.length - 1];
    if (!chat || !last || !list._stick || last.classList.contains("mine") || document.visibilityState !== "visible") return;
    var id = last.getAttribute("data-id");
    if (!id || list.getAttribute("data-seen-up-to") === id) return;
    list.setAttribute("data-seen-up-to", id);
    post(chat.getAttribute("data-path") + "/seen", { message_id: id });
  }

  // Older pages load as the list nears its top (a screen's height away), until the
  // beginning of the chat; the reading position stays where it was.
  function maybeLoadOlder(list) {
    if (list._loadingOlder || !window.htmx) return;
    var link = list.querySelector("li.older a");
    if (!link || list.scrollTop > Math.max(300, list.clientHeight)) return;
    list._loadingOlder = true;
    list.setAttribute("aria-busy", "true");
    htmx.trigger(link, "load-older");
  }

  function setupList(list) {
    list._ready = true;
    decorate(list);
    var divider = list.querySelector("#unread-divider");
    if (divider) {
      list.scrollTop += divider.getBoundingClientRect().top - list.getBoundingClientRect().top - 8;
      list._stick = atBottom(list);
    } else {
      scrollToBottom(list);
    }
    list._maxId = 0;
    list.querySelectorAll("li.message").forEach(function (li) {
      list._maxId = Math.max(list._maxId, messageId(li));
    });
    list.addEventListener("scroll", function () {
      list._stick = atBottom(list);
      if (list._stick) {
        hideJump(list);
        markSeen(list);
      }
      maybeLoadOlder(list);
    }, { passive: true });
    var button = jumpButton(list);
    if (button) {
      button.addEventListener("click", function () {
        scrollToBottom(list);
        markSeen(list);
        list.focus();
      });
    }
    maybeLoadOlder(list);
    markSeen(list);
  }

  // After new messages: keep following the bottom if the reader was there (or sent
  // one); otherwise leave the view alone and count them on the "↓ N new" button.
  function refreshList(list) {
    if (!list._ready) {
      setupList(list);
      return;
    }
    var stick = list._stick;
    decorate(list);
    var fresh = 0, mine = false;
    list.querySelectorAll("li.message").forEach(function (li) {
      var id = messageId(li);
      if (id > list._maxId) {
        if (li.classList.contains("mine")) mine = true;
        else fresh++;
        list._maxId = id;
      }
    });
    if (stick || mine) scrollToBottom(list);
    else if (fresh) showJump(list, fresh);
    markSeen(list);
  }

  function refreshLists() {
    document.querySelectorAll("ol.messages").forEach(refreshList);
    localize(document);
  }

  // The reading position is the first message in view: it stays where it was on the
  // screen while older ones are put above it (and days and groups are redone).
  function offsetInList(list, li) {
    return li.getBoundingClientRect().top - list.getBoundingClientRect().top;
  }
  document.addEventListener("htmx:beforeSwap", function (e) {
    var target = e.detail.target;
    if (!target || !target.matches || !target.matches("li.older")) return;
    var list = target.closest("ol.messages");
    if (!list) return;
    var top = list.getBoundingClientRect().top;
    var anchor = Array.prototype.find.call(list.querySelectorAll("li.message"), function (li) {
      return li.getBoundingClientRect().bottom > top;
    });
    list._anchor = anchor ? { li: anchor, at: offsetInList(list, anchor) } : null;
    list._fromBottom = list.scrollHeight - list.scrollTop;
  });
  document.addEventListener("htmx:afterSwap", function () {
    document.querySelectorAll("ol.messages").forEach(function (list) {
      if (list._fromBottom == null) return;
      decorate(list);
      var anchor = list._anchor;
      // A copy of the anchor that came again with the older page wins over it.
      var li = anchor && (anchor.li.isConnected ? anchor.li : document.getElementById(anchor.li.id));
      if (li && list.contains(li)) list.scrollTop += offsetInList(list, li) - anchor.at;
      else list.scrollTop = list.scrollHeight - list._fromBottom;
      list._anchor = null;
      list._fromBottom = null;
      list._loadingOlder = false;
      list.removeAttribute("aria-busy");
      maybeLoadOlder(list);
    });
    refreshLists();
  });
  document.addEventListener("htmx:afterRequest", function (e) {
    var elt = e.detail.elt;
    if (!e.detail.successful && elt && elt.closest && elt.closest("li.older")) {
      var list = elt.closest("ol.messages");
      list._loadingOlder = false;
      list.removeAttribute("aria-busy");
    }
  });
  document.addEventListener("DOMContentLoaded", refreshLists);
  document.addEventListener("htmx:afterSettle", refreshLists);
  document.addEventListener("htmx:historyRestore", refreshLists);
  // A live event swaps several fragments at once (the message, its chat's row, counts),
  // and a resumed stream brings many events together: one refresh after them all.
  var refreshQueued = false;
  function refreshListsSoon() {
    if (refreshQueued) return;
    refreshQueued = true;
    setTimeout(function () {
      refreshQueued = false;
      refreshLists();
    }, 0);
  }
  document.addEventListener("htmx:oobAfterSwap", function (e) {
    refreshListsSoon();
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

  // --- keyboard in the message list: one tab stop, arrows between messages -----------
  // The list itself is a tab stop; ↑/↓ move between messages, and only the message that
  // has focus lends its links and "⋯" button to the tab order.
  // Each message's controls are set once, and again only when it gains or loses focus:
  // after a live insert only the new message is touched, however long the list.
  var CONTROLS = "a, button, summary, input, select, textarea";
  function rove(li, active) {
    li.querySelectorAll(CONTROLS).forEach(function (el) {
      if (el.getAttribute("role") === "menuitem") return;
      // The reaction picker opens from the menu's "React": its summary is no tab stop.
      var index = active && el.tagName !== "SUMMARY" ? 0 : -1;
      if (el.tabIndex !== index) el.tabIndex = index;
    });
    li._roved = active;
  }
  function rovingMessages(list) {
    list.querySelectorAll("li.message:not(.editing)").forEach(function (li) {
      var active = li === list._active;
      if (li._roved !== active) rove(li, active);
    });
  }
  function focusMessage(list, li) {
    if (!li) return;
    list._active = li;
    rovingMessages(list);
    li.focus();
  }
  document.addEventListener("focusin", function (e) {
    var li = e.target.closest && e.target.closest("ol.messages li.message");
    if (!li) return;
    var list = li.closest("ol.messages");
    if (list._active !== li) {
      list._active = li;
      rovingMessages(list);
    }
  });
  document.addEventListener("keydown", function (e) {
    var list = e.target.closest && e.target.closest("ol.messages");
    if (!list || e.altKey || e.ctrlKey || e.metaKey) return;
    if (e.target !== list && !e.target.matches("li.message")) return;
    var items = Array.prototype.slice.call(list.querySelectorAll("li.message"));
    if (!items.length) return;
    var at = items.indexOf(e.target);
    var next = null;
    if (e.key === "ArrowUp") next = at < 0 ? items[items.length - 1] : items[Math.max(0, at - 1)];
    else if (e.key === "ArrowDown") next = at < 0 ? items[items.length - 1] : items[Math.min(items.length - 1, at + 1)];
    else if (e.key === "Home") next = items[0];
    else if (e.key === "End") next = items[items.length - 1];
    else if (e.key === "Escape") {
      var composer = document.getElementById("composer-input");
      if (composer) {
        e.preventDefault();
        composer.focus();
      }
      return;
    } else if ((e.key === "ContextMenu" || (e.key === "F10" && e.shiftKey)) && at >= 0) {
      var button = items[at].querySelector(".menu-button");
      if (button) {
        e.preventDefault();
        openMenu(button);
      }
      return;
    }
    if (next) {
      e.preventDefault();
      focusMessage(list, next);
      if (next === items[0]) maybeLoadOlder(list);
    }
  });

  // --- a message's actions: a menu button (Enter, Space or ↓ opens; Esc closes) -------
  function menuOf(button) {
    return document.getElementById(button.getAttribute("aria-controls"));
  }
  function menuItems(menu) {
    return Array.prototype.slice.call(menu.querySelectorAll("[role=menuitem]"));
  }
  function closeMenus(focusButton) {
    document.querySelectorAll(".menu-button[aria-expanded=true]").forEach(function (button) {
      button.setAttribute("aria-expanded", "false");
      var menu = menuOf(button);
      if (menu) menu.hidden = true;
      if (focusButton) button.focus();
    });
  }
  function openMenu(button, last) {
    closeMenus(false);
    var menu = menuOf(button);
    if (!menu) return;
    menu.hidden = false;
    // Open upwards where the list would cut it off (the last messages).
    menu.classList.remove("up");
    var list = button.closest("ol.messages");
    if (list && menu.getBoundingClientRect().bottom > list.getBoundingClientRect().bottom) menu.classList.add("up");
    button.setAttribute("aria-expanded", "true");
    var items = menuItems(menu);
    if (items.length) items[last ? items.length - 1 : 0].focus();
  }
  document.addEventListener("click", function (e) {
    var button = e.target.closest && e.target.closest(".menu-button");
    if (button) {
      // Without JavaScript the button is a link to the message's edit page.
      e.preventDefault();
      if (button.getAttribute("aria-expanded") === "true") closeMenus(true);
      else openMenu(button);
      return;
    }
    var item = e.target.closest && e.target.closest("[role=menuitem]");
    if (!item || !item.closest(".menu")) closeMenus(false);
  });
  document.addEventListener("keydown", function (e) {
    var button = e.target.closest && e.target.closest(".menu-button");
    if (button && (e.key === "Enter" || e.key === " " || e.key === "ArrowDown" || e.key === "ArrowUp")) {
      e.preventDefault();
      openMenu(button, e.key === "ArrowUp");
      return;
    }
    var menu = e.target.closest && e.target.closest(".menu[role=menu]");
    if (!menu) return;
    var items = menuItems(menu);
    var at = items.indexOf(e.target);
    if (e.key === "ArrowDown" || e.key === "ArrowUp") {
      e.preventDefault();
      var step = e.key === "ArrowDown" ? 1 : -1;
      items[(at + step + items.length) % items.length].focus();
    } else if (e.key === "Home" || e.key === "End") {
      e.preventDefault();
      items[e.key === "Home" ? 0 : items.length - 1].focus();
    } else if (e.key === "Escape") {
      e.preventDefault();
      e.stopPropagation();
      closeMenus(true);
    } else if (e.key === "Tab") {
      closeMenus(false);
    }
  });

  // --- editing in place: Enter saves, Esc cancels, focus returns to the message -------
  var focusAfterSwap = null;
  document.addEventListener("htmx:beforeRequest", function (e) {
    var elt = e.detail.elt;
    if (!elt || !elt.closest) return;
    var li = elt.closest("li.message");
    if (li && (elt.matches(".menu-edit") || elt.closest(".edit-form"))) {
      focusAfterSwap = elt.matches(".menu-edit") ? "#edit-" + li.getAttribute("data-id") : "#" + li.id;
    }
  });
  document.addEventListener("keydown", function (e) {
    var form = e.target.closest && e.target.closest("form.edit-form");
    if (!form || e.target.tagName !== "TEXTAREA" || e.isComposing) return;
    if (e.key === "Escape") {
      e.preventDefault();
      e.stopPropagation();
      form.querySelector(".cancel-edit").click();
    } else if (e.key === "Enter" && !e.shiftKey) {
      e.preventDefault();
      if (e.target.value.trim() !== "") form.requestSubmit();
    }
  });
  document.addEventListener("htmx:afterSettle", function () {
    if (!focusAfterSwap) return;
    var el = document.querySelector(focusAfterSwap);
    focusAfterSwap = null;
    if (!el) return;
    var list = el.closest("ol.messages");
    if (list && el.matches("li.message")) focusMessage(list, el);
    else el.focus();
    el.scrollIntoView({ block: "nearest" });
    if (el.tagName === "TEXTAREA") el.setSelectionRange(el.value.length, el.value.length);
  });

  // --- composer: a draft kept per chat while switching; grows with its text ----------
  function draftKey(form) {
    return "messenger:draft:" + form.getAttribute("data-draft-key");
  }
  function grow(textarea) {
    textarea.style.height = "auto";
    textarea.style.height = textarea.scrollHeight + 2 + "px";
  }
  function setupComposer() {
    var form = document.querySelector("form.composer[data-draft-key]");
    if (!form || form._ready) return;
    form._ready = true;
    var input = form.querySelector("textarea");
    try {
      var draft = sessionStorage.getItem(draftKey(form));
      if (draft && !input.value) input.value = draft;
    } catch (err) {
      // storage unavailable: no drafts
    }
    grow(input);
  }
  document.addEventListener("input", function (e) {
    var form = e.target.closest && e.target.closest("form.composer[data-draft-key]");
    if (!form || e.target.tagName !== "TEXTAREA") return;
    grow(e.target);
    try {
      if (e.target.value) sessionStorage.setItem(draftKey(form), e.target.value);
      else sessionStorage.removeItem(draftKey(form));
    } catch (err) {
      // storage unavailable
    }
  });
  document.addEventListener("htmx:afterRequest", function (e) {
    var form = e.detail.elt;
    if (!form || !form.matches || !form.matches("form.composer[data-draft-key]") || !e.detail.successful) return;
    try {
      sessionStorage.removeItem(draftKey(form));
    } catch (err) {
      // storage unavailable
    }
    grow(form.querySelector("textarea"));
  });

  // --- the chat screen: list on the left, the open chat on the right -----------------
  function listLinks() {
    return Array.prototype.slice.call(document.querySelectorAll("#conversation-list li.conversation:not([hidden]) > a"));
  }
  function openPath() {
    var chat = document.querySelector("#pane [data-path]");
    return chat ? chat.getAttribute("data-path") : null;
  }
  // Marks the open chat in the list, and makes the list one tab stop (↑/↓ inside).
  function markCurrent() {
    var path = openPath();
    var links = listLinks();
    var current = null;
    document.querySelectorAll("#conversation-list li.conversation > a").forEach(function (a) {
      var here = a.getAttribute("href") === path;
      if (here) {
        a.setAttribute("aria-current", "page");
        current = a;
      } else {
        a.removeAttribute("aria-current");
      }
      a.tabIndex = -1;
    });
    var stop = current && !current.parentNode.hidden ? current : links[0];
    if (stop) stop.tabIndex = 0;
  }
  function applyFilter() {
    var input = document.getElementById("chat-filter");
    if (!input) return;
    var q = input.value.trim().toLowerCase();
    document.querySelectorAll("#conversation-list li.conversation").forEach(function (li) {
      li.hidden = q !== "" && (li.getAttribute("data-name") || "").toLowerCase().indexOf(q) < 0;
    });
  }
  document.addEventListener("input", function (e) {
    if (e.target.id !== "chat-filter") return;
    applyFilter();
    markCurrent();
  });
  document.addEventListener("submit", function (e) {
    if (!e.target.matches || !e.target.matches("form.chat-filter")) return;
    // Filtering happens as one types; Enter opens the first chat that matches.
    e.preventDefault();
    var first = listLinks()[0];
    if (first) first.click();
  });
  document.addEventListener("keydown", function (e) {
    var link = e.target.closest && e.target.closest("#conversation-list li.conversation > a");
    if (!link || e.altKey || e.ctrlKey || e.metaKey) return;
    var links = listLinks();
    var at = links.indexOf(link);
    var next = null;
    if (e.key === "ArrowDown") next = links[at + 1];
    else if (e.key === "ArrowUp") next = links[at - 1];
    else if (e.key === "Home") next = links[0];
    else if (e.key === "End") next = links[links.length - 1];
    if (next) {
      e.preventDefault();
      links.forEach(function (a) {
        a.tabIndex = a === next ? 0 : -1;
      });
      next.focus();
    }
  });

  // The tab title: "(3) bob · Messenger", the count being unread messages of chats
  // that are not muted.
  var pageTitle = document.title.replace(/^\(\d+\) /, "");
  function unreadTotal() {
    var badge = document.querySelector("#nav-unread [data-count]");
    return badge ? Number(badge.getAttribute("data-count")) || 0 : 0;
  }
  function updateTitle() {
    var named = document.querySelector("#pane [data-page-title]");
    var base = named ? named.getAttribute("data-page-title") + " · Messenger" : pageTitle;
    var n = unreadTotal();
    var title = (n > 0 ? "(" + n + ") " : "") + base;
    if (document.title !== title) document.title = title;
  }

  function refreshScreen() {
    applyFilter();
    markCurrent();
    setupComposer();
    updateTitle();
  }
  document.addEventListener("DOMContentLoaded", refreshScreen);
  document.addEventListener("htmx:afterSettle", refreshScreen);
  document.addEventListener("htmx:oobAfterSwap", updateTitle);
  document.addEventListener("htmx:historyRestore", refreshScreen);

  // Opens a chat in the pane when the list is on the page, else as a page.
  function openChat(href) {
    var link = document.querySelector('#conversation-list a[href="' + href.replace(/"/g, "") + '"]');
    if (link) link.click();
    else location.href = href;
  }

  // --- desktop notifications (opt-in): new messages while the tab is hidden -----------
  var NOTIFY = "messenger:notify";
  function notifySupported() {
    return "Notification" in window;
  }
  function notifyOn() {
    try {
      return notifySupported() && Notification.permission === "granted" && localStorage.getItem(NOTIFY) === "on";
    } catch (err) {
      return false;
    }
  }
  function renderNotifyToggle() {
    var button = document.getElementById("notify-toggle");
    if (!button) return;
    if (!notifySupported()) {
      button.hidden = true;
      return;
    }
    button.hidden = false;
    var on = notifyOn();
    button.setAttribute("aria-pressed", on ? "true" : "false");
    button.textContent = Notification.permission === "denied"
      ? "Desktop notifications: blocked (allow them in the browser's site settings)"
      : "Desktop notifications: " + (on ? "on" : "off");
  }
  document.addEventListener("click", function (e) {
    if (!e.target.closest || !e.target.closest("#notify-toggle")) return;
    if (notifyOn()) {
      localStorage.setItem(NOTIFY, "off");
      renderNotifyToggle();
      return;
    }
    Promise.resolve(Notification.requestPermission()).then(function (permission) {
      if (permission === "granted") localStorage.setItem(NOTIFY, "on");
      renderNotifyToggle();
    });
  });
  document.addEventListener("DOMContentLoaded", renderNotifyToggle);

  // What the page knows of a chat (its name, page and mute) from the chats list, or from
  // a fresh copy of it on pages without one.
  function chatRow(root, key) {
    var row = root.querySelector('li.conversation[data-key="' + key + '"]');
    return row && { name: row.getAttribute("data-name"), href: row.getAttribute("data-href"), muted: row.hasAttribute("data-muted") };
  }
  function chatInfo(key) {
    var known = chatRow(document, key);
    if (known) return Promise.resolve(known);
    return fetch("/chats/list", { credentials: "same-origin", headers: { "HX-Request": "true" } })
      .then(function (r) {
        return r.ok ? r.text() : "";
      })
      .then(function (html) {
        var template = document.createElement("template");
        template.innerHTML = html;
        return chatRow(template.content, key);
      })
      .catch(function () {
        return null;
      });
  }
  var notified = Promise.resolve();
  document.addEventListener("htmx:sseBeforeMessage", function (e) {
    var message = e.detail;
    if (e.defaultPrevented || !message || message.type !== "oob" || document.visibilityState !== "hidden" || !notifyOn()) return;
    var match = /hx-swap-oob="beforeend:#messages-([dg]-\d+)"/.exec(message.data || "");
    if (!match) return;
    var key = match[1];
    var template = document.createElement("template");
    template.innerHTML = message.data;
    var li = template.content.querySelector("li.message");
    if (!li || li.classList.contains("mine")) return;
    var sender = (li.querySelector(".sender") || {}).textContent || "";
    var text = ((li.querySelector(".content") || {}).textContent || "").slice(0, 140);
    // In arrival order, although a chat not yet in the list is looked up over the network:
    // the newest message must be the notification that stays.
    notified = notified.then(function () {
      return chatInfo(key);
    }).then(function (chat) {
      // A mention of me notifies even in a muted chat.
      if (chat && chat.muted && !li.classList.contains("mentioned")) return;
      var group = key.charAt(0) === "g";
      var title = group ? sender + " in #" + (chat ? chat.name : "a group") : sender;
      var href = chat ? chat.href : group ? "/chats/g/" + key.slice(2) : "/chats/@" + sender;
      var note = new Notification(title, { body: text, tag: key });
      note.onclick = function () {
        window.focus();
        openChat(href);
        if (note.close) note.close();
      };
    });
  });

  // --- shortcuts: Alt+↑/↓ between chats, "/" to search, "?" for help -----------------
  function typingIn(el) {
    return el && (el.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(el.tagName));
  }
  function openShortcuts() {
    var dialog = document.getElementById("shortcuts");
    if (dialog && !dialog.open && dialog.showModal) dialog.showModal();
  }
  document.addEventListener("keydown", function (e) {
    if (e.defaultPrevented) return;
    // Esc closes the group settings sheet of narrower screens (a :target panel).
    if (e.key === "Escape" && location.hash === "#members-panel") {
      location.hash = "#chat-title";
      var opener = document.querySelector(".settings-link");
      if (opener) opener.focus();
      return;
    }
    if (e.altKey && !e.ctrlKey && !e.metaKey && (e.key === "ArrowUp" || e.key === "ArrowDown")) {
      var links = listLinks();
      if (!links.length) return;
      e.preventDefault();
      var at = links.findIndex(function (a) {
        return a.getAttribute("aria-current") === "page";
      });
      var next = e.key === "ArrowDown" ? links[Math.min(links.length - 1, at + 1)] : links[Math.max(0, at < 0 ? 0 : at - 1)];
      if (next && next.getAttribute("aria-current") !== "page") next.click();
      return;
    }
    if (e.ctrlKey || e.metaKey || e.altKey || typingIn(e.target)) return;
    if (e.key === "/") {
      var search = document.getElementById("chat-filter") || document.getElementById("friend-search") || document.getElementById("people-search");
      if (search) {
        e.preventDefault();
        search.focus();
        search.select();
      }
    } else if (e.key === "?") {
      e.preventDefault();
      openShortcuts();
    }
  });
  document.addEventListener("click", function (e) {
    if (e.target.closest && e.target.closest(".shortcuts-open")) openShortcuts();
  });
  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll(".shortcuts-open").forEach(function (b) {
      b.hidden = false;
    });
  });
  // After switching chats the new pane's shortcuts button needs showing too.
  document.addEventListener("htmx:afterSettle", function () {
    document.querySelectorAll(".shortcuts-open[hidden]").forEach(function (b) {
      b.hidden = false;
    });
  });
})();
