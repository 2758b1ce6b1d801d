/* A small reader for the OpenAPI 3 schema at /api/schema/: every path and method with its summary,
   parameters, request body and responses, schemas expanded. Served from static/, no CDN. */
(function () {
  "use strict";
  var host = document.getElementById("api-docs");
  if (!host) return;

  function h(tag, attrs, children) {
    var n = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) { if (k === "text") n.textContent = attrs[k]; else n.setAttribute(k, attrs[k]); });
    (children || []).forEach(function (c) { if (c) n.appendChild(typeof c === "string" ? document.createTextNode(c) : c); });
    return n;
  }
  function resolve(schema, spec, depth) {
    if (!schema || depth > 6) return schema;
    if (schema.$ref) return resolve(spec.components.schemas[schema.$ref.split("/").pop()], spec, depth + 1);
    var out = {};
    Object.keys(schema).forEach(function (k) {
      var v = schema[k];
      if (k === "properties") {
        out.properties = {};
        Object.keys(v).forEach(function (p) { out.properties[p] = resolve(v[p], spec, depth + 1); });
      } else if (k === "items" || k === "additionalProperties") out[k] = typeof v === "object" ? resolve(v, spec, depth + 1) : v;
      else if (k === "allOf" || k === "oneOf" || k === "anyOf") out[k] = v.map(function (s) { return resolve(s, spec, depth + 1); });
      else out[k] = v;
    });
    return out;
  }
  function example(schema) {
    if (!schema) return null;
    if (schema.allOf) return example(schema.allOf[0]);
    if (schema.oneOf) return example(schema.oneOf[0]);
    switch (schema.type) {
      case "object":
        if (!schema.properties) return {};
        var o = {};
        Object.keys(schema.properties).forEach(function (k) { o[k] = example(schema.properties[k]); });
        return o;
      case "array": return [example(schema.items)];
      case "integer": return 0;
      case "number": return 0.0;
      case "boolean": return false;
      case "string": return schema.format === "date-time" ? "2026-01-01T00:00:00Z" : schema.enum ? schema.enum[0] : "string";
      default: return null;
    }
  }
  function block(title, schema, spec) {
    var resolved = resolve(schema, spec, 0);
    return h("div", {}, [h("h4", { text: title }), h("pre", { text: JSON.stringify(example(resolved), null, 2) })]);
  }

  fetch(host.dataset.schemaUrl, { headers: { Accept: "application/json" } })
    .then(function (r) { if (!r.ok) throw new Error("HTTP " + r.status); return r.json(); })
    .then(function (spec) {
      host.textContent = "";
      host.appendChild(h("p", { "class": "muted", text: (spec.info.title || "") + " · version " + (spec.info.version || "") }));
      Object.keys(spec.paths).sort().forEach(function (path) {
        var ops = spec.paths[path];
        Object.keys(ops).forEach(function (method) {
          var op = ops[method];
          if (typeof op !== "object" || !op.responses) return;
          var section = h("section", { "class": "endpoint", id: (op.operationId || method + path) }, [
            h("h3", {}, [h("span", { "class": "method method-" + method, text: method.toUpperCase() }), h("code", { text: path })]),
            op.summary ? h("p", { text: op.summary }) : null,
            op.description ? h("p", { "class": "muted", text: op.description }) : null,
          ]);
          if (op.parameters && op.parameters.length) {
            var rows = op.parameters.map(function (p) {
              return h("tr", {}, [h("td", {}, [h("code", { text: p.name })]), h("td", { text: p.in }),
                h("td", { text: (p.schema && p.schema.type) || "" }), h("td", { text: p.required ? "required" : "optional" }),
                h("td", { text: p.description || "" })]);
            });
            section.appendChild(h("h4", { text: "Parameters" }));
            section.appendChild(h("table", {}, [h("tbody", {}, rows)]));
          }
          var body = op.requestBody && op.requestBody.content && op.requestBody.content["application/json"];
          if (body) section.appendChild(block("Request body (JSON)", body.schema, spec));
          Object.keys(op.responses).forEach(function (code) {
            var c = op.responses[code].content, j = c && c["application/json"];
            if (j) section.appendChild(block("Response " + code, j.schema, spec));
            else section.appendChild(h("h4", { text: "Response " + code + (op.responses[code].description ? ": " + op.responses[code].description : "") }));
          });
          host.appendChild(section);
        });
      });
    })
    .catch(function (err) { host.textContent = "Could not load the schema: " + err.message; });
})();
