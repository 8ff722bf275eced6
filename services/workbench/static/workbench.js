// Ledgerline workbench: keyboard shortcuts and small conveniences. Money is never computed
// here: totals come from the server (htmx), in exact decimals.
(function () {
  "use strict";
  function typing(e) {
    var t = e.target;
    return t && (t.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(t.tagName));
  }
  function rows() { return Array.prototype.slice.call(document.querySelectorAll("tr[data-row]")); }
  var current = -1;
  function select(i) {
    var all = rows();
    if (!all.length) return;
    current = Math.max(0, Math.min(i, all.length - 1));
    all.forEach(function (r, j) { r.classList.toggle("selected", j === current); });
    var link = all[current].querySelector("a");
    if (link) link.focus();
  }
  document.addEventListener("keydown", function (e) {
    if (e.ctrlKey || e.metaKey || e.altKey || typing(e)) return;
    if (e.key === "n") {
      var next = document.getElementById("next-account");
      if (next) { e.preventDefault(); window.location.assign(next.getAttribute("href")); }
    } else if (e.key === "j") { e.preventDefault(); select(current + 1); }
    else if (e.key === "k") { e.preventDefault(); select(current - 1); }
  });
  document.addEventListener("htmx:afterSwap", function () { current = -1; });
  document.addEventListener("change", function (e) {
    if (e.target && e.target.hasAttribute("data-autosubmit")) e.target.form.submit();
  });
})();
