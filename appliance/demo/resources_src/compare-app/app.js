// "Which fraction is bigger?": a small practice game for the Schoolbox demo pack.
// It runs inside a sandboxed frame and needs no network.
(function () {
  "use strict";
  var score = 0, asked = 0, pair = null;
  function fraction() {
    var d = 2 + Math.floor(Math.random() * 7);
    return { n: 1 + Math.floor(Math.random() * (d - 1)), d: d };
  }
  function draw(button, f) {
    button.textContent = "";
    var label = document.createElement("div");
    label.textContent = f.n + "/" + f.d;
    var bar = document.createElement("div");
    bar.className = "bar";
    bar.setAttribute("aria-hidden", "true");
    for (var i = 0; i < f.d; i++) {
      var part = document.createElement("span");
      if (i < f.n) part.className = "on";
      bar.appendChild(part);
    }
    button.appendChild(label);
    button.appendChild(bar);
    button.setAttribute("aria-label", f.n + " out of " + f.d);
  }
  function next() {
    var a = fraction(), b = fraction();
    while (a.n * b.d === b.n * a.d) b = fraction();
    pair = [a, b];
    draw(document.getElementById("left"), a);
    draw(document.getElementById("right"), b);
    document.getElementById("feedback").textContent = "";
  }
  function choose(index) {
    if (!pair) return;
    var a = pair[0], b = pair[1];
    var bigger = a.n * b.d > b.n * a.d ? 0 : 1;
    asked += 1;
    if (index === bigger) {
      score += 1;
      document.getElementById("feedback").textContent = "Yes! " + pair[bigger].n + "/" + pair[bigger].d + " is bigger.";
    } else {
      document.getElementById("feedback").textContent = "Not this time: " + pair[bigger].n + "/" + pair[bigger].d + " is bigger. Compare the shaded parts.";
    }
    pair = null;
    document.getElementById("score").textContent = score;
    document.getElementById("asked").textContent = asked;
  }
  document.getElementById("left").addEventListener("click", function () { choose(0); });
  document.getElementById("right").addEventListener("click", function () { choose(1); });
  document.getElementById("next").addEventListener("click", next);
  next();
})();
