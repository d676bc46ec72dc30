/* The tutor panel: send the question, show the answer word by word as it streams.
   Plain ES5 and XMLHttpRequest, so it runs on old phones and Chromebooks; without
   JavaScript the form still posts and a whole page comes back. */
(function () {
  "use strict";
  var panel = document.querySelector("[data-tutor]");
  if (!panel || !window.XMLHttpRequest) { return; }
  var form = panel.querySelector("form");
  var box = panel.querySelector(".tutor-answer");
  var answer = box.querySelector(".answer");
  var sourcesBox = box.querySelector(".sources");
  var sourcesList = sourcesBox.querySelector("ul");
  var button = form.querySelector("button");
  var busy = false;

  function showSources(sources) {
    sourcesList.innerHTML = "";
    for (var i = 0; i < sources.length; i++) {
      var s = sources[i];
      var link = document.createElement("a");
      link.href = "/learn/lessons/" + encodeURIComponent(s.lesson_id) + (s.anchor ? "#" + s.anchor : "");
      link.textContent = s.heading === s.lesson_title ? s.lesson_title : s.lesson_title + ": " + s.heading;
      var li = document.createElement("li");
      li.appendChild(link);
      sourcesList.appendChild(li);
    }
    sourcesBox.hidden = sources.length === 0;
  }

  function finish() {
    busy = false;
    button.disabled = false;
    box.removeAttribute("aria-busy");
  }

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    if (busy) { return; }
    busy = true;
    button.disabled = true;
    box.hidden = false;
    box.setAttribute("aria-busy", "true");
    answer.textContent = "…";
    sourcesBox.hidden = true;
    var sources = [];
    var seen = 0;
    var text = "";
    var xhr = new XMLHttpRequest();
    xhr.open("POST", form.action);
    xhr.setRequestHeader("Accept", "text/event-stream");
    xhr.setRequestHeader("Content-Type", "application/x-www-form-urlencoded");

    function read() {
      // Server-Sent Events: blocks of "event: NAME\ndata: JSON" ended by a blank line.
      var blocks = xhr.responseText.slice(seen).split("\n\n");
      for (var i = 0; i < blocks.length - 1; i++) {
        seen += blocks[i].length + 2;
        var name = (/^event: (.*)$/m.exec(blocks[i]) || [])[1];
        var data = JSON.parse((/^data: (.*)$/m.exec(blocks[i]) || [null, "null"])[1]);
        if (name === "token") { text += data.text; answer.textContent = text; }
        else if (name === "waiting" && !text && data.position > 0) {
          answer.textContent = panel.getAttribute("data-waiting").replace("{n}", data.position);
        }
        else if (name === "reading" && !text) {
          answer.textContent = panel.getAttribute("data-reading");
        }
        else if (name === "sources") { sources = data; }
        else if (name === "done") { showSources(sources); }
      }
    }
    function readSafely() {
      try { read(); } catch (e) { answer.textContent = panel.getAttribute("data-failed"); }
    }
    xhr.onprogress = readSafely;
    xhr.onload = function () {
      if (xhr.status === 200) { readSafely(); }
      else {
        var message = panel.getAttribute("data-failed");
        try { message = JSON.parse(xhr.responseText).error.message; } catch (e) { /* a page */ }
        var wait = xhr.getResponseHeader("Retry-After");
        answer.textContent = message + (wait ? " " + panel.getAttribute("data-wait").replace("{s}", wait) : "");
      }
      finish();
    };
    xhr.onerror = function () {
      answer.textContent = panel.getAttribute("data-offline");
      finish();
    };
    var fields = form.querySelectorAll("input, textarea");
    var body = [];
    for (var i = 0; i < fields.length; i++) {
      body.push(encodeURIComponent(fields[i].name) + "=" + encodeURIComponent(fields[i].value));
    }
    xhr.send(body.join("&"));
  });
})();
