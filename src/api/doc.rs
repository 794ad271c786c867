//! The OpenAPI description, generated from the handlers' annotations.

use std::sync::LazyLock;

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "proactive",
        description = "A proactive life-event rules engine for public services: the agency push API, \
                       the operators' probes and metrics, and the callbacks of gateways and email clients."
    ),
    paths(
        super::events::post_event,
        super::events::post_batch,
        super::healthz,
        super::ready,
        super::metrics,
        super::openapi_json,
        super::callbacks::sms_report,
        super::callbacks::unsubscribe_page,
        super::callbacks::unsubscribe,
    ),
    components(schemas(super::Problem, super::events::Change, super::events::Accepted, super::events::BatchLine)),
    modifiers(&Security),
    tags(
        (name = "agency", description = "Registering triggers: events pushed by agencies (CONTRACTS.md §3)"),
        (name = "operators", description = "Health, readiness, metrics and this description"),
        (name = "callbacks", description = "What gateways and email clients call back"),
    )
)]
struct ApiDoc;

struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "agency_key",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("An API key from `proactive keys create`"))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "callback_secret",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("The SMS gateway's callback secret"))
                    .build(),
            ),
        );
    }
}

/// The OpenAPI description of this server.
pub fn openapi() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

/// The description as served, serialized once.
pub(super) fn openapi_text() -> &'static str {
    static TEXT: LazyLock<String> =
        LazyLock::new(|| ApiDoc::openapi().to_pretty_json().expect("the OpenAPI description serializes"));
    &TEXT
}
