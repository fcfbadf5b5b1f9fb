//! A new protocol added with only a spec file and a script — no Rust, no rebuild.

use crate::helpers::{Setup, spawn_with};

const SPEC: &str = r##"
openapi: 3.0.3
info: { title: Acme heat meter, version: "1" }
x-hookyard-reply: { style: text }
paths:
  /acme/push:
    post:
      operationId: push
      x-hookyard-auth:
        - { block: api-key-header, header: X-Key, keys: keys, reject: { status: 403 } }
      x-hookyard-events: { split: one-or-many }
      x-hookyard-idempotency: { key: [/source, /data/seq] }
      requestBody:
        content:
          application/json:
            schema:
              oneOf:
                - $ref: "#/components/schemas/Reading"
                - { type: array, items: { $ref: "#/components/schemas/Reading" } }
      responses:
        "200": { description: OK }
components:
  schemas:
    Reading:
      type: object
      required: [seq, kwh]
      properties:
        seq: { type: integer }
        kwh: { type: number, minimum: 0 }
"##;

const SCRIPT: &str = r#"
fn on_event(event) {
    append_csv(`acme/${event.source}.csv`, ["seq", "kwh"], [event.data.seq, event.data.kwh]);
}
"#;

#[tokio::test]
async fn a_spec_and_a_script_are_enough_for_a_new_protocol() {
    let setup = Setup {
        config: "[protocols.acme]\nkeys = { \"acme-key\" = \"cellar\" }\n",
        extra_specs: vec![("acme.yaml", SPEC)],
        scripts: vec![("acme.rhai", SCRIPT)],
        ..Setup::default()
    };
    let app = spawn_with(setup).await;
    let send = async |key: &str, body: &str| {
        let res =
            app.client.post(app.url("/acme/push")).header("X-Key", key).body(body.to_owned()).send().await.unwrap();
        (res.status().as_u16(), res.text().await.unwrap())
    };
    assert_eq!(send("acme-key", r#"[{"seq":1,"kwh":10.5},{"seq":2,"kwh":11}]"#).await, (200, "OK".into()));
    assert_eq!(send("acme-key", r#"{"seq":2,"kwh":11}"#).await, (200, "OK".into()));
    assert_eq!(
        send("acme-key", r#"{"seq":3,"kwh":-1}"#).await,
        (400, "ERROR: invalid request: /kwh: -1 is less than the minimum of 0".into())
    );
    assert_eq!(send("wrong", r#"{"seq":3,"kwh":1}"#).await, (403, "ERROR: Invalid API key".into()));
    assert_eq!(app.read("acme/cellar.csv"), "seq,kwh\r\n1,10.5\r\n2,11\r\n");
    let health: serde_json::Value = app.get_json("/healthz").await;
    assert!(health["protocols"].as_array().unwrap().contains(&"acme".into()));
    let doc = app.client.get(app.url("/openapi/acme.yaml")).send().await.unwrap().text().await.unwrap();
    assert_eq!(doc, SPEC);
}
