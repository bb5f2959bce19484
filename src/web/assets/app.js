// claw dashboard: live logs. Every <pre data-stream=URL> follows its step's log over
// Server-Sent Events; text is added as text (never as HTML).
(function () {
  "use strict";
  function follow(pre) {
    if (pre.dataset.following) { return; }
    pre.dataset.following = "1";
    var src = new EventSource(pre.dataset.stream);
    src.addEventListener("log", function (e) {
      pre.appendChild(document.createTextNode(e.data + "\n"));
      pre.scrollTop = pre.scrollHeight;
    });
    src.addEventListener("end", function () { src.close(); pre.classList.remove("live"); });
    src.onerror = function () { src.close(); };
  }
  function scan(root) {
    (root || document).querySelectorAll("pre[data-stream]").forEach(follow);
  }
  document.addEventListener("DOMContentLoaded", function () { scan(document); });
  document.addEventListener("htmx:afterSettle", function (e) { scan(e.target); });
})();
