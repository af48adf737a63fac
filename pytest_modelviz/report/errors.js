// Script errors, failed resources (an image that does not load) and console.error calls are all
// written into the page, so a headless browser's DOM dump reveals them.
window.modelvizErrors = [];
function modelvizShowErrors() {
  var box = document.getElementById("js-errors");
  if (box && window.modelvizErrors.length) {
    box.hidden = false;
    box.textContent = "Page error: " + window.modelvizErrors.join("; ");
  }
}
function modelvizReport(message) {
  window.modelvizErrors.push(String(message));
  modelvizShowErrors();
}
window.addEventListener("error", function (event) {
  var target = event.target;
  if (target && target !== window && (target.src || target.href)) {
    modelvizReport("failed to load " + (target.src || target.href));
  } else {
    modelvizReport(event.message);
  }
}, true);  // capture phase: resource errors do not bubble to window
(function () {
  var original = console.error;
  console.error = function () {
    modelvizReport(Array.prototype.slice.call(arguments).join(" "));
    return original.apply(console, arguments);
  };
})();
// Errors raised before the box exists are shown once the page is parsed.
document.addEventListener("DOMContentLoaded", modelvizShowErrors);
