// Starts Swagger UI on /api/docs with the document the element names (a file of its own:
// the page's Content-Security-Policy allows no inline script).
(function () {
  var element = document.getElementById("swagger-ui");
  window.SwaggerUIBundle({
    url: element.dataset.specUrl,
    domNode: element,
    deepLinking: true,
    tryItOutEnabled: false,
  });
})();
