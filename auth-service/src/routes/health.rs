//! Probes: `/healthz` (the process serves) and `/readyz` (token-service and Redis answer).

use actix_web::{HttpResponse, web};
use serde_json::json;

use super::AppState;

/// `GET /healthz`: always 200 while the server runs.
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

/// `GET /readyz`: 200 when token-service passes its gRPC health check and Redis answers PING,
/// else 503 naming what failed.
pub async fn readyz(app: web::Data<AppState>) -> HttpResponse {
    if app.draining.is_draining() {
        return HttpResponse::ServiceUnavailable()
            .insert_header(("Retry-After", "1"))
            .json(json!({"status": "draining"}));
    }
    let (token_service, redis) = tokio::join!(app.tokens.ready(), app.states.ping());
    let redis = redis.is_ok();
    let body = json!({
        "status": if token_service && redis { "ready" } else { "unavailable" },
        "token_service": if token_service { "ok" } else { "unavailable" },
        "redis": if redis { "ok" } else { "unavailable" },
    });
    if token_service && redis {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable()
            .insert_header(("Retry-After", "5"))
            .json(body)
    }
}
