//! The OpenAPI description, generated from the handlers' annotations.

use std::sync::LazyLock;

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "proactive",
        description = "A proactive life-event rules engine for public services: the agency push API, \
                       the citizen API (consent, preferences, history, drafts), the staff API, \
                       the operators' probes and metrics, and the callbacks of gateways and email clients."
    ),
    paths(
        super::events::post_event,
        super::events::post_batch,
        super::citizen::get_consents,
        super::citizen::post_consent,
        super::citizen::get_preferences,
        super::citizen::put_preferences,
        super::citizen::get_notices,
        super::citizen::get_drafts,
        super::citizen::get_draft,
        super::citizen::patch_draft,
        super::citizen::submit_draft,
        super::citizen::decline_draft,
        super::staff::life_situations,
        super::staff::case_stats,
        super::staff::notice_stats,
        super::staff::take_up,
        super::staff::dead_letters,
        super::staff::get_case,
        super::staff::cancel_case,
        super::healthz,
        super::ready,
        super::metrics,
        super::openapi_json,
        super::callbacks::sms_report,
        super::callbacks::unsubscribe_page,
        super::callbacks::unsubscribe,
    ),
    components(schemas(
        super::Problem, super::events::Change, super::events::Accepted, super::events::BatchLine,
        super::citizen::Recorded, super::citizen::Consents, super::citizen::ConsentView, super::citizen::PurposeView,
        super::citizen::ConsentRequest, super::citizen::Preferences, super::citizen::PreferencesRequest,
        super::citizen::Notices, super::citizen::NoticeEntry, super::citizen::Drafts, super::citizen::Draft,
        super::citizen::DraftField, super::citizen::Correction, super::citizen::Submitted,
        super::staff::LifeSituations, super::staff::LifeSituationView, super::staff::CaseStats, super::staff::CaseCount,
        super::staff::NoticeStats, super::staff::NoticeCount, super::staff::TakeUp, super::staff::TakeUpRow,
        super::staff::DeadLetters, super::staff::DeadLetter, super::staff::CaseView, super::staff::StepView,
        super::staff::CaseNotice, super::staff::CancelRequest,
    )),
    modifiers(&Security),
    tags(
        (name = "agency", description = "Registering triggers: events pushed by agencies (CONTRACTS.md §3)"),
        (name = "citizens", description = "A person (or their representative) with a citizen token: consent, \
                                           preferences, the notices sent to them and why, prefilled drafts"),
        (name = "staff", description = "Policy staff with a staff key: life situations, counts, take-up, dead letters, cases"),
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
            "staff_key",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("A staff key from `proactive keys create --role staff`"))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "citizen_token",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "A citizen token (`proactive token issue`; in production the state login's own token, verified instead)",
                    ))
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
