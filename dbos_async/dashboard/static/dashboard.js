// dbos_async dashboard: live refresh of the page's #live-region, and tidy filter URLs.
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
    // The filter form sends only the fields that are filled in: shorter, readable URLs.
    var filters = document.getElementById("filters");
    if (filters) {
      filters.addEventListener("submit", function () {
        Array.prototype.forEach.call(filters.querySelectorAll("input"), function (input) {
          if (input.type !== "checkbox" && input.value === "") {
            input.disabled = true;
          }
        });
      });
      // (Coming back to this page from the browser's history shows the form usable.)
      window.addEventListener("pageshow", function () {
        Array.prototype.forEach.call(filters.querySelectorAll("input"), function (input) {
          input.disabled = false;
        });
      });
    }
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
