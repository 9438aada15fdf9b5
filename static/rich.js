// Richer messages in the browser: reply, jump to a quoted message (loading older pages
// until it is there), @mention autocomplete in groups, who reacted on long press, and
// small upkeep after live updates. The server renders everything; this only helps.
(function () {
  "use strict";

  document.documentElement.classList.add("rich-js");

  function composer() {
    return document.querySelector("form.composer");
  }

  // --- replies ---------------------------------------------------------------------
  function setReply(id, sender, text) {
    var form = composer();
    if (!form) return;
    var input = form.querySelector("input[name=reply_to_message_id]");
    if (!input) {
      input = document.createElement("input");
      input.type = "hidden";
      input.name = "reply_to_message_id";
      form.prepend(input);
    }
    input.value = id;
    var bar = form.querySelector(".replying");
    if (!bar) {
      bar = document.createElement("div");
      bar.className = "replying";
      bar.setAttribute("role", "status");
      var label = document.createElement("span");
      var cancel = document.createElement("button");
      cancel.type = "button";
      cancel.className = "secondary";
      cancel.textContent = "Cancel reply";
      cancel.addEventListener("click", clearReply);
      bar.append(label, cancel);
      form.prepend(bar);
    }
    bar.querySelector("span").textContent = "Replying to " + sender + ": " + text;
    var area = form.querySelector("textarea");
    if (area) area.focus();
  }

  function clearReply() {
    var form = composer();
    if (!form) return;
    var input = form.querySelector("input[name=reply_to_message_id]");
    if (input) input.remove();
    var bar = form.querySelector(".replying");
    if (bar) bar.remove();
  }

  // The chat screen's message menu (app.js) stays open after an item that swaps nothing.
  function closeMenuOf(item) {
    var menu = item.closest(".menu[role=menu]");
    if (!menu) return;
    menu.hidden = true;
    var button = document.querySelector(".menu-button[aria-controls='" + menu.id + "']");
    if (button) button.setAttribute("aria-expanded", "false");
  }

  document.addEventListener("click", function (e) {
    var button = e.target.closest && e.target.closest(".reply-btn");
    if (!button) return;
    closeMenuOf(button);
    setReply(button.getAttribute("data-reply-id"), button.getAttribute("data-reply-sender"), button.getAttribute("data-reply-text"));
  });

  // "React" in the menu opens the message's picker, its first emoji focused.
  document.addEventListener("click", function (e) {
    var item = e.target.closest && e.target.closest(".menu-react");
    if (!item) return;
    closeMenuOf(item);
    var li = document.getElementById("msg-" + item.getAttribute("data-react-id"));
    var picker = li && li.querySelector("details.react-picker");
    if (!picker) return;
    picker.open = true;
    var first = picker.querySelector(".picker-body button");
    if (first) first.focus();
  });

  // --- jumping to a message, loading older pages as needed --------------------------
  function flash(li) {
    li.scrollIntoView({ block: "center" });
    li.classList.add("flash-target");
    setTimeout(function () { li.classList.remove("flash-target"); }, 2000);
  }

  function notice(text) {
    var box = document.getElementById("flash");
    if (box) box.textContent = text;
  }

  function jumpTo(id, depth) {
    var li = document.getElementById("msg-" + id);
    if (li) {
      flash(li);
      return;
    }
    var link = document.querySelector("ol.messages li.older a[hx-get]");
    if (!link || !window.htmx || (depth || 0) > 200) {
      notice("That message is no longer in this conversation.");
      return;
    }
    var older = link.closest("li.older");
    htmx.ajax("GET", link.getAttribute("hx-get"), { target: older, swap: "outerHTML" }).then(function () {
      setTimeout(function () { jumpTo(id, (depth || 0) + 1); }, 0);
    });
  }

  document.addEventListener("click", function (e) {
    var quote = e.target.closest && e.target.closest("a.reply-quote[data-reply-to]");
    if (!quote) return;
    e.preventDefault();
    jumpTo(quote.getAttribute("data-reply-to"), 0);
  });

  function jumpToHash() {
    var m = /^#msg-(\d+)$/.exec(location.hash);
    if (m && document.querySelector("ol.messages")) jumpTo(m[1], 0);
  }
  // After app.js has scrolled the list to its end.
  document.addEventListener("DOMContentLoaded", function () { setTimeout(jumpToHash, 50); });

  // --- upkeep after swaps -----------------------------------------------------------
  function upkeep() {
    document.querySelectorAll("li.message .mention.me").forEach(function (span) {
      var li = span.closest("li.message");
      if (li) li.classList.add("mentioned");
    });
    document.querySelectorAll("li.message.deleted[id^='msg-']").forEach(function (li) {
      var id = li.id.slice(4);
      document.querySelectorAll("a.reply-quote[data-reply-to='" + id + "']:not(.deleted)").forEach(function (q) {
        q.classList.add("deleted");
        q.innerHTML = "<em>message deleted</em>";
      });
    });
  }
  // Once after a burst of swaps (a live event brings several, a resumed stream many).
  var upkeepQueued = false;
  function upkeepSoon() {
    if (upkeepQueued) return;
    upkeepQueued = true;
    setTimeout(function () {
      upkeepQueued = false;
      upkeep();
    }, 0);
  }
  document.addEventListener("DOMContentLoaded", upkeep);
  document.addEventListener("htmx:afterSettle", upkeepSoon);
  document.addEventListener("htmx:oobAfterSwap", upkeepSoon);

  document.addEventListener("htmx:afterRequest", function (e) {
    var elt = e.detail.elt;
    if (!elt || !elt.closest) return;
    var picker = elt.closest("details.react-picker");
    if (picker && e.detail.successful) {
      picker.open = false;
      var input = picker.querySelector("input[name=emoji]");
      if (input) input.value = "";
    }
    if (elt.classList && elt.classList.contains("composer") && e.detail.successful) {
      clearReply();
      closeMentions();
    }
  });

  // --- who reacted, on long press ---------------------------------------------------
  var pressTimer = null;
  document.addEventListener("touchstart", function (e) {
    var button = e.target.closest && e.target.closest(".reaction[data-names]");
    if (!button) return;
    pressTimer = setTimeout(function () {
      var tip = document.createElement("div");
      tip.className = "reaction-names";
      tip.setAttribute("role", "status");
      tip.textContent = button.textContent.trim().split(/\s+/)[0] + " " + button.getAttribute("data-names");
      var r = button.getBoundingClientRect();
      tip.style.left = Math.max(8, r.left) + "px";
      tip.style.top = Math.max(8, r.top - 40) + "px";
      document.body.appendChild(tip);
      setTimeout(function () { tip.remove(); }, 3000);
    }, 500);
  }, { passive: true });
  ["touchend", "touchmove", "touchcancel"].forEach(function (kind) {
    document.addEventListener(kind, function () { clearTimeout(pressTimer); }, { passive: true });
  });

  // --- @mention autocomplete in group chats -----------------------------------------
  var members = {};
  var menu = null;
  var choices = [];
  var active = 0;

  function groupOf(area) {
    var chat = area.closest("[data-conversation]");
    var key = chat ? chat.getAttribute("data-conversation") : "";
    return key.indexOf("g-") === 0 ? key.slice(2) : null;
  }

  function typedMention(area) {
    var before = area.value.slice(0, area.selectionStart);
    var m = /(^|[^\w@.])@([A-Za-z0-9_.]{0,25})$/.exec(before);
    return m ? m[2] : null;
  }

  function closeMentions() {
    if (menu) menu.remove();
    menu = null;
    choices = [];
    var area = document.getElementById("composer-input");
    // No aria-expanded: a textarea is a textbox, which may not carry it (axe); the
    // listbox is announced through aria-controls and the active option.
    if (area) area.removeAttribute("aria-activedescendant");
  }

  function showMentions(area, names) {
    if (!names.length) return closeMentions();
    if (!menu) {
      menu = document.createElement("ul");
      menu.id = "mention-list";
      menu.className = "mention-list";
      menu.setAttribute("role", "listbox");
      menu.setAttribute("aria-label", "Members to mention");
      area.closest("form").appendChild(menu);
      area.setAttribute("aria-controls", "mention-list");
      area.setAttribute("aria-autocomplete", "list");
    }
    choices = names;
    active = Math.min(active, names.length - 1);
    menu.innerHTML = "";
    names.forEach(function (name, i) {
      var li = document.createElement("li");
      li.id = "mention-" + i;
      li.setAttribute("role", "option");
      li.setAttribute("aria-selected", i === active ? "true" : "false");
      li.textContent = "@" + name;
      li.addEventListener("mousedown", function (e) {
        e.preventDefault();
        choose(area, name);
      });
      menu.appendChild(li);
    });
    area.setAttribute("aria-activedescendant", "mention-" + active);
  }

  function choose(area, name) {
    var caret = area.selectionStart;
    var before = area.value.slice(0, caret).replace(/@[A-Za-z0-9_.]*$/, "@" + name + " ");
    area.value = before + area.value.slice(caret);
    area.selectionStart = area.selectionEnd = before.length;
    closeMentions();
    area.focus();
  }

  function suggest(area) {
    var group = groupOf(area);
    var typed = group ? typedMention(area) : null;
    if (typed === null) return closeMentions();
    var show = function (list) {
      var lower = typed.toLowerCase();
      showMentions(area, list.filter(function (n) { return n.toLowerCase().indexOf(lower) === 0; }).slice(0, 8));
    };
    if (members[group]) return show(members[group]);
    fetch("/chats/g/" + group + "/mentionable", { credentials: "same-origin" })
      .then(function (r) { return r.ok ? r.json() : []; })
      .then(function (list) { members[group] = list; if (typedMention(area) !== null) show(list); })
      .catch(function () {});
  }

  document.addEventListener("input", function (e) {
    if (e.target.id === "composer-input") {
      active = 0;
      suggest(e.target);
    }
  });

  // Capture: before app.js sends on Enter.
  document.addEventListener("keydown", function (e) {
    if (e.target.id !== "composer-input") return;
    if (e.key === "Escape" && !menu) {
      clearReply();
      return;
    }
    if (!menu || !choices.length) return;
    if (e.key === "ArrowDown" || e.key === "ArrowUp") {
      active = (active + (e.key === "ArrowDown" ? 1 : choices.length - 1)) % choices.length;
      showMentions(e.target, choices);
    } else if (e.key === "Enter" || e.key === "Tab") {
      choose(e.target, choices[active]);
    } else if (e.key === "Escape") {
      closeMentions();
    } else {
      return;
    }
    e.preventDefault();
    e.stopImmediatePropagation();
  }, true);

  document.addEventListener("focusout", function (e) {
    if (e.target.id === "composer-input") setTimeout(closeMentions, 150);
  });
})();
