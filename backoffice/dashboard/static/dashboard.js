// posedge fleet dashboard: the only script (the CSP allows no inline script).
// A state filter applies as soon as it is chosen; without JavaScript the Show button does it.
"use strict";
document.addEventListener("DOMContentLoaded", function () {
  document.querySelectorAll("select.autosubmit").forEach(function (select) {
    select.addEventListener("change", function () {
      if (select.form) { select.form.submit(); }
    });
  });
});
