//! The Swagger UI at `/docs` and every document at `/openapi/<name>.yaml|json` (the
//! protocols' as written, and the management API's as poem-openapi builds it).
//!
//! The Swagger UI assets are the ones poem-openapi embeds: the page is poem-openapi's own,
//! with its single-document start-up replaced by a selector over every protocol document
//! (served exactly as written) and the management API. Nothing is fetched from the network.

use std::collections::BTreeMap;
use std::sync::Arc;

use poem::http::StatusCode;
use poem::web::Path;
use poem::{Endpoint, EndpointExt, Response, handler};
use poem_openapi::OpenApiService;

/// One served document: YAML as written, and its JSON form.
pub struct Document {
    pub yaml: String,
    pub json: String,
}

/// `/docs`, built on its first request: the page carries Swagger UI's script and styles
/// (1.6 MB), which a server nobody browses need not hold.
pub struct DocsPage {
    names: Vec<String>,
    page: std::sync::OnceLock<String>,
}

impl DocsPage {
    /// The page for the documents `names` (management last).
    pub fn new(names: Vec<String>) -> Self {
        Self { names, page: std::sync::OnceLock::new() }
    }

    pub fn html(&self) -> &str {
        self.page.get_or_init(|| {
            // Only the head (Swagger UI's script and styles) of this page is used.
            let ui = OpenApiService::new((), "hookyard", env!("CARGO_PKG_VERSION")).swagger_ui_html();
            swagger_page(&ui, &self.names)
        })
    }
}

/// `/docs`: Swagger UI with a selector over `names` (management last).
fn swagger_page(service_html: &str, names: &[String]) -> String {
    let head_end = service_html.find("<div id=\"ui\"></div>").unwrap_or(service_html.len());
    let options: String = names.iter().map(|n| format!("<option value=\"{n}\">{n}</option>")).collect();
    format!(
        "{head}<div style=\"padding:8px 16px;font-family:sans-serif\">\
         <label for=\"doc\">Document: </label><select id=\"doc\">{options}</select></div>\n\
         <div id=\"ui\"></div>\n<script>\n{SCRIPT}</script>\n</body>\n</html>\n",
        head = &service_html[..head_end],
    )
}

const SCRIPT: &str = r#"const select = document.getElementById('doc');
function show(name) { SwaggerUIBundle({ dom_id: '#ui', url: 'openapi/' + name + '.yaml', deepLinking: false }); }
const wanted = location.hash.slice(1);
if ([...select.options].some(o => o.value === wanted)) { select.value = wanted; }
select.addEventListener('change', () => { history.replaceState(null, '', '#' + select.value); show(select.value); });
show(select.value);
"#;

/// `/openapi/:file` for every document in `docs`.
pub fn documents_endpoint(docs: BTreeMap<String, Document>) -> impl Endpoint {
    serve_document.data(Arc::new(docs))
}

#[handler]
fn serve_document(Path(file): Path<String>, docs: poem::web::Data<&Arc<BTreeMap<String, Document>>>) -> Response {
    let found = match file.rsplit_once('.') {
        Some((name, "yaml" | "yml")) => docs.get(name).map(|d| (d.yaml.clone(), "application/yaml")),
        Some((name, "json")) => docs.get(name).map(|d| (d.json.clone(), "application/json")),
        _ => None,
    };
    match found {
        Some((body, content_type)) => Response::builder().content_type(content_type).body(body),
        None => Response::builder()
            .status(StatusCode::NOT_FOUND)
            .content_type("text/plain; charset=utf-8")
            .body(format!("no document {file:?}; try /docs")),
    }
}
