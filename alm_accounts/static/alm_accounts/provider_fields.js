/* The ALM account form serves two providers. Jira Data Center needs the
   Permission and (for a company CA) a CA certificate, and each account has its
   own callback URL; Jira Cloud needs the scopes, and this deployment has one
   callback URL for every Cloud account. Show what the chosen authentication
   needs, as soon as it is chosen (the server ignores the hidden fields). */
(function () {
  "use strict";
  var CLOUD = "jira_cloud_oauth2";
  function rows(name) {
    return document.querySelectorAll(".form-row.field-" + name + ", .fieldBox.field-" + name);
  }
  function show(name, visible) {
    rows(name).forEach(function (row) { row.hidden = !visible; });
  }
  function apply(select) {
    var cloud = select.value === CLOUD;
    document.querySelectorAll("[data-provider]").forEach(function (box) {
      box.hidden = box.getAttribute("data-provider") !== select.value;
    });
    show("scope", !cloud);
    show("jira_ca_certificate", !cloud);
    show("cloud_scopes", cloud);
    var baseUrl = document.getElementById("id_base_url");
    if (baseUrl) {
      baseUrl.placeholder = cloud ? "https://your-site.atlassian.net" : "https://jira.example.com/jira";
    }
    document.querySelectorAll("[data-cloud-text]").forEach(function (el) {
      if (!el.hasAttribute("data-dc-text")) { el.setAttribute("data-dc-text", el.textContent); }
      el.textContent = cloud ? el.getAttribute("data-cloud-text") : el.getAttribute("data-dc-text");
    });
  }
  document.addEventListener("DOMContentLoaded", function () {
    var select = document.getElementById("id_authentication");
    if (!select) { return; }
    apply(select);
    select.addEventListener("change", function () { apply(select); });
  });
})();
