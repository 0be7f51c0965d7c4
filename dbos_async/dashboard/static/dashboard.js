// dbos_async dashboard: live refresh of the page's #live-region, nothing else.
// While the "live" box is ticked, the page is fetched again every data-refresh ms and
// its #live-region replaced by the fresh one (HTML the server escaped). The choice is
// remembered per browser. No dependency, no build step.
(function () {
  "use strict";
  var KEY = "dbos_dashboard_live";

  function refresh() {
    var box = document.getElementById("live");
    var region = document.getElementById("live-region");
    if (!box || !box.checked || !region || document.hidden) {
      return;
    }
    fetch(window.location.href, { credentials: "same-origin" })
      .then(function (response) {
        return response.ok ? response.text() : null;
      })
      .then(function (text) {
        if (text === null) {
          return;
        }
        var fresh = new DOMParser().parseFromString(text, "text/html");
        var next = fresh.getElementById("live-region");
        if (next && region.isConnected) {
          region.replaceWith(document.importNode(next, true));
        }
      })
      .catch(function () {
        /* the server is away for a moment: try again at the next tick */
      });
  }

  document.addEventListener("DOMContentLoaded", function () {
    var box = document.getElementById("live");
    var every = parseInt(document.body.getAttribute("data-refresh"), 10) || 5000;
    if (box) {
      box.checked = window.localStorage.getItem(KEY) !== "off";
      box.addEventListener("change", function () {
        window.localStorage.setItem(KEY, box.checked ? "on" : "off");
      });
      window.setInterval(refresh, every);
    }
  });
})();
