/* Copy URL: the Clipboard API where the page is allowed to use it (https or
   localhost), otherwise select the text so the admin can press Ctrl+C. */
(function () {
  "use strict";
  function say(button, text) {
    var status = button.parentNode.querySelector(".copy-url-status");
    if (status) { status.textContent = text; }
  }
  function selectText(input) {
    input.focus();
    input.select();
    input.setSelectionRange(0, input.value.length);
  }
  function fallback(button, input) {
    selectText(input);
    var copied = false;
    try { copied = document.execCommand("copy"); } catch (e) { copied = false; }
    say(button, copied ? "Copied." : "Selected: press Ctrl+C (⌘C) to copy.");
  }
  document.addEventListener("click", function (event) {
    var button = event.target.closest ? event.target.closest("button.copy-url") : null;
    if (!button) { return; }
    event.preventDefault();
    var input = document.getElementById(button.getAttribute("data-copy-target"));
    if (!input) { return; }
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(input.value).then(
        function () { selectText(input); say(button, "Copied."); },
        function () { fallback(button, input); }
      );
    } else {
      fallback(button, input);
    }
  });
})();
