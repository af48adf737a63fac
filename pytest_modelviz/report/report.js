// Outcome filter for the test index and cards; the page is fully readable without it.
(function () {
  var buttons = document.querySelectorAll(".filters button");
  var rows = document.querySelectorAll("[data-outcome]");
  buttons.forEach(function (button) {
    button.addEventListener("click", function () {
      var want = button.getAttribute("data-filter");
      buttons.forEach(function (b) { b.classList.toggle("active", b === button); });
      rows.forEach(function (el) {
        // A test of a merged run lists the outcome of each job it ran in.
        el.hidden = want !== "all" && el.getAttribute("data-outcome").split(" ").indexOf(want) < 0;
      });
    });
  });
  // Pictures fitted to the width can be shown at their own size (the viewport scrolls).
  document.querySelectorAll("figure.zoomable").forEach(function (figure) {
    var button = figure.querySelector("button.zoom");
    if (!button) { return; }
    button.hidden = false;
    button.addEventListener("click", function () {
      var actual = figure.classList.toggle("actual");
      button.textContent = actual ? "fit width" : "actual size";
    });
  });
  document.body.setAttribute("data-ready", "yes");
})();
