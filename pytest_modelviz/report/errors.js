// Any script error is written into the page, so a headless browser's DOM dump reveals it.
window.modelvizErrors = [];
window.addEventListener("error", function (event) {
  window.modelvizErrors.push(String(event.message));
  var box = document.getElementById("js-errors");
  if (box) { box.hidden = false; box.textContent = "Script error: " + window.modelvizErrors.join("; "); }
});
