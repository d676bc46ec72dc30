/* A video or a sound played to its end tells the box the learner finished it, as the
   "I have finished it" button does without JavaScript. Plain ES5 for old phones. */
(function () {
  "use strict";
  var player = document.querySelector("[data-resource-player]");
  var form = document.querySelector("[data-resource-done]");
  if (!player || !form || !window.XMLHttpRequest) { return; }
  var sent = false;
  function finished() {
    if (sent) { return; }
    sent = true;
    var request = new XMLHttpRequest();
    request.open("POST", form.action);
    request.setRequestHeader("Accept", "application/json");
    request.setRequestHeader("Content-Type", "application/x-www-form-urlencoded");
    request.onload = function () {
      if (request.status === 200) {
        form.querySelector("[data-done-message]").hidden = false;
        form.querySelector("button").hidden = true;
      } else {
        sent = false;
      }
    };
    request.onerror = function () { sent = false; };
    var token = form.querySelector("input[name=csrf_token]").value;
    request.send("csrf_token=" + encodeURIComponent(token));
  }
  player.addEventListener("ended", finished);
  player.addEventListener("timeupdate", function () {
    // Most of it watched counts: the last seconds are often credits or silence.
    if (player.duration && player.currentTime / player.duration >= 0.9) { finished(); }
  });
})();
