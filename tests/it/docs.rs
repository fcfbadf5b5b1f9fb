//! Swagger UI and the served documents.

use crate::helpers::{REPO, spawn_app};

#[tokio::test]
async fn docs_offer_every_protocol_document_with_the_embedded_swagger_ui() {
    let app = spawn_app("").await;
    let res = app.client.get(app.url("/docs")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let page = res.text().await.unwrap();
    assert!(page.contains("SwaggerUIBundle"), "the Swagger UI bundle is inlined");
    assert!(!page.contains("https://") || !page.contains("<script src=\"http"), "no asset is fetched from the network");
    for name in ["ai-on-the-edge", "gridx", "wattmon", "wattsense", "management"] {
        assert!(page.contains(&format!("<option value=\"{name}\">")), "{name} is offered");
    }
}

#[tokio::test]
async fn each_document_is_served_exactly_as_written_and_as_json() {
    let app = spawn_app("").await;
    for name in ["ai-on-the-edge", "gridx", "wattmon", "wattsense"] {
        let written = std::fs::read_to_string(format!("{REPO}/spec/{name}.yaml")).unwrap();
        let yaml = app.client.get(app.url(&format!("/openapi/{name}.yaml"))).send().await.unwrap();
        assert_eq!(yaml.headers()["content-type"], "application/yaml");
        assert_eq!(yaml.text().await.unwrap(), written, "{name}");
        let json: serde_json::Value = app.get_json(&format!("/openapi/{name}.json")).await;
        let parsed: serde_json::Value = serde_yaml::from_str(&written).unwrap();
        assert_eq!(json, parsed, "{name}");
    }
    let management: serde_json::Value = app.get_json("/openapi/management.json").await;
    assert!(management["paths"]["/healthz"]["get"].is_object());
    for path in ["/metrics", "/api/events", "/api/events/{id}", "/api/replay"] {
        assert!(management["paths"][path].is_object(), "{path} missing from the management document");
    }
    let missing = app.client.get(app.url("/openapi/nope.yaml")).send().await.unwrap();
    assert_eq!(missing.status(), 404);
}

#[tokio::test]
async fn healthz_reports_the_served_protocols() {
    let app = spawn_app("").await;
    let health: serde_json::Value = app.get_json("/healthz").await;
    assert_eq!(health["status"], "ok");
    assert_eq!(health["protocols"], serde_json::json!(["ai-on-the-edge", "gridx", "wattmon", "wattsense"]));
}
