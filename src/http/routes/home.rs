//! `GET /`: a small HTML page that names the service and links to its documentation and its
//! operational endpoints, for a person who opens the service in a browser.

use actix_web::HttpResponse;
use actix_web::http::header::ContentType;

/// The page: static, so it is written once here rather than templated.
const PAGE: &str = r#"<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>product-service</title>
</head>
<body>
<h1>product-service</h1>
<p>Race-free upserts of products by (brand, serial, manufacturer).</p>
<ul>
<li><a href="/docs">/docs</a>: the interactive API documentation (Swagger UI)</li>
<li><a href="/openapi.json">/openapi.json</a>: the OpenAPI 3.1 document</li>
<li><a href="/healthz">/healthz</a>: liveness</li>
<li><a href="/readyz">/readyz</a>: readiness</li>
<li><a href="/metrics">/metrics</a>: Prometheus metrics (on <code>METRICS_ADDR</code> instead, when set)</li>
</ul>
</body>
</html>
"#;

/// `GET /`: the page, as `text/html; charset=utf-8`.
pub async fn home() -> HttpResponse {
    HttpResponse::Ok()
        .content_type(ContentType::html())
        .body(PAGE)
}
