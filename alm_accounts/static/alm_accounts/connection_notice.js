/* On a connected ALM account, saving a new Jira base URL or Client ID ends the
   connection (its tokens belong to the old Jira's link). Say so as soon as the
   admin edits such a field, before saving; the field's data-ends-connection
   attribute holds the words. Editing it back hides the notice again. */
(function () {
  "use strict";
  function normalized(input) {
    var value = input.value.trim();
    // The server stores the base URL without trailing slashes.
    return input.type === "url" ? value.replace(/\/+$/, "") : value;
  }
  function noticeFor(input) {
    var id = input.id + "-ends-connection";
    var notice = document.getElementById(id);
    if (!notice) {
      notice = document.createElement("p");
      notice.id = id;
      notice.className = "alm-ends-connection";
      notice.setAttribute("role", "alert");
      notice.hidden = true;
      var row = input.closest ? input.closest(".form-row") : null;
      (row || input.parentNode).appendChild(notice);
    }
    return notice;
  }
  function update(input) {
    var original = input.defaultValue.trim();
    if (input.type === "url") { original = original.replace(/\/+$/, ""); }
    var notice = noticeFor(input);
    notice.textContent = input.getAttribute("data-ends-connection");
    notice.hidden = normalized(input) === original;
  }
  function onEdit(event) {
    var input = event.target;
    if (input && input.hasAttribute && input.hasAttribute("data-ends-connection")) { update(input); }
  }
  document.addEventListener("input", onEdit);
  document.addEventListener("change", onEdit);
})();
