// The PIN sheet's Print button: shown only where this script runs (without it the
// browser's own Print still works), kept out of inline script for the page's CSP.
document.querySelectorAll(".print-button").forEach(function (button) {
  button.hidden = false;
  button.addEventListener("click", function () { window.print(); });
});
