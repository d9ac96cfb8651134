(function () {
  "use strict";

  // Sorting: every heading of a table.sortable is a button; the cells' data-v hold the exact values.
  function valueOf(row, index) {
    var cell = row.cells[index];
    return cell ? cell.getAttribute("data-v") || "" : "";
  }

  function sortBy(th) {
    var table = th.closest("table");
    var body = table.tBodies[0];
    var index = th.cellIndex;
    var ascending = th.getAttribute("aria-sort") !== "ascending";
    var numeric = th.getAttribute("data-type") === "num";
    table.querySelectorAll("thead th").forEach(function (other) { other.setAttribute("aria-sort", "none"); });
    th.setAttribute("aria-sort", ascending ? "ascending" : "descending");
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (a, b) {
      var x = valueOf(a, index), y = valueOf(b, index);
      if (x === "" || y === "") { return x === y ? 0 : (x === "" ? 1 : -1); }  // missing values last
      var order = numeric ? Number(x) - Number(y) : x.localeCompare(y);
      return ascending ? order : -order;
    });
    var fragment = document.createDocumentFragment();
    rows.forEach(function (row) { fragment.appendChild(row); });
    body.appendChild(fragment);
  }

  document.querySelectorAll("table.sortable thead th button").forEach(function (button) {
    button.addEventListener("click", function () { sortBy(button.closest("th")); });
  });

  // Filters: each bar hides the rows of every table.board in its section.
  document.querySelectorAll(".filters").forEach(function (bar) {
    var section = bar.closest("section") || document.body;
    var controls = bar.querySelectorAll("[data-filter]");
    var count = bar.querySelector(".filter-count");
    function apply() {
      var want = {};
      controls.forEach(function (control) { want[control.getAttribute("data-filter")] = control.value.trim().toLowerCase(); });
      var shown = 0, total = 0;
      document.querySelectorAll("table.board tbody tr").forEach(function (row) {
        var keep = (!want.dataset || row.getAttribute("data-dataset").toLowerCase() === want.dataset) &&
          (!want.size || row.getAttribute("data-size") === want.size) &&
          (!want.text || row.getAttribute("data-text").indexOf(want.text) !== -1);
        row.hidden = !keep;
        if (section.contains(row)) { total += 1; shown += keep ? 1 : 0; }
      });
      if (count) { count.textContent = shown + " of " + total + " rows shown"; }
    }
    controls.forEach(function (control) {
      control.addEventListener("input", apply);
      control.addEventListener("change", apply);
    });
    apply();
  });

  // Printing shows every provenance list; closing them again afterwards.
  window.addEventListener("beforeprint", function () {
    document.querySelectorAll("details:not([open])").forEach(function (d) { d.open = true; d.setAttribute("data-print-opened", ""); });
  });
  window.addEventListener("afterprint", function () {
    document.querySelectorAll("details[data-print-opened]").forEach(function (d) { d.open = false; d.removeAttribute("data-print-opened"); });
  });
})();
