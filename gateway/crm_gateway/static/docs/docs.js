// Starts Swagger UI on /openapi.json. Served with the page (no CDN): swagger-ui-dist's bundle, shipped
// under static/swagger-ui/. validatorUrl null: never ask validator.swagger.io about the document.
window.addEventListener("load", function () {
  window.ui = SwaggerUIBundle({
    url: "/openapi.json",
    dom_id: "#swagger-ui",
    deepLinking: true,
    validatorUrl: null,
    presets: [SwaggerUIBundle.presets.apis],
    layout: "BaseLayout",
  });
});
