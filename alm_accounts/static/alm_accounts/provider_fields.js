/* The ALM account form serves two providers. Jira Data Center needs the
   Permission and (for a company CA) a CA certificate, and each account has its
   own callback URL; Jira Cloud needs the scopes, and this deployment has one
   callback URL for every Cloud account. Show what the chosen authentication
   needs, as soon as it is chosen (the server ignores the hidden fields).
   A service account (OAuth 2.0 client credentials, on either platform) needs
   its Client ID and Secret, and neither a callback URL nor Get Auth Token. */
(function () {
  "use strict";
  var CLOUD = ["jira_cloud_oauth2", "jira_cloud_service_account"];
  var SERVICE = ["jira_server_service_account", "jira_cloud_service_account"];
  function rows(name) {
    return document.querySelectorAll(".form-row.field-" + name + ", .fieldBox.field-" + name);
  }
  function show(name, visible) {
    rows(name).forEach(function (row) { row.hidden = !visible; });
  }
  // The Service account section is taken out of the page while another authentication is chosen (not just
  // hidden): its "Service account Client ID / Secret" must not be mistaken for the link's Client ID / Secret
  // (by a password manager, a screen reader's label search, a browser test), and nothing of it is posted then.
  var serviceSections = null;
  function placeServiceAccountFields(service) {
    if (serviceSections === null) {
      serviceSections = [];
      document.querySelectorAll("fieldset.alm-service-account").forEach(function (section) {
        var marker = document.createComment("service account section");
        section.parentNode.insertBefore(marker, section);
        serviceSections.push({section: section, marker: marker});
      });
    }
    serviceSections.forEach(function (entry) {
      if (service && !entry.section.parentNode) {
        entry.marker.parentNode.insertBefore(entry.section, entry.marker.nextSibling);
      } else if (!service && entry.section.parentNode) {
        entry.section.parentNode.removeChild(entry.section);
      }
    });
  }
  function apply(select) {
    var cloud = CLOUD.indexOf(select.value) !== -1;
    var service = SERVICE.indexOf(select.value) !== -1;
    document.querySelectorAll("[data-provider]").forEach(function (box) {
      box.hidden = box.getAttribute("data-provider") !== select.value;
    });
    // First put the Service account section in (or take it out): the rows shown or hidden below must be found
    // in the page, else a section taken out while hidden comes back hidden.
    placeServiceAccountFields(service);
    show("scope", !cloud);
    show("jira_ca_certificate", !cloud);
    show("cloud_scopes", cloud);
    show("service_client_id", service);
    show("service_client_secret", service);
    show("callback_url", !service);
    document.querySelectorAll(".alm-get-auth-token").forEach(function (row) { row.hidden = service; });
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
