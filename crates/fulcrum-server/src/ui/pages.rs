//! The console's pages and actions. Reading pages ask the store through the same visibility
//! rules as the API (`visible_model`: tenant, domain, the policy's access decision); actions call
//! the API's own handlers, so a refusal is the same decision with the same reasons.

use askama::Template;
use axum::Form;
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use fulcrum_core::identity::Action;
use serde::Deserialize;

use super::session::{COOKIE, SESSION};
use crate::AppState;
use crate::auth::Caller;
use crate::problem::ApiError;
use crate::routes::models::load_version;
use crate::routes::{parse_model_name, visible_model};

/// Who is signed in, for the page header (empty on the sign-in page).
#[derive(Debug, Default)]
pub struct Who {
    pub subject: String,
    pub role: String,
    pub tenant: String,
    pub csrf: String,
}

/// A signed-in console caller: the API caller its session's token makes, and the session.
pub struct UiCaller {
    pub caller: Caller,
    pub(super) cookie: String,
}

impl UiCaller {
    pub(super) fn who(&self, state: &AppState) -> Who {
        let p = &self.caller.0;
        Who {
            subject: p.subject.clone(),
            role: p.role.as_str().to_owned(),
            tenant: p.tenant.clone(),
            csrf: state.ui_key.csrf(&self.cookie),
        }
    }
}

fn cookie_named(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|c| c.trim().strip_prefix(name)?.strip_prefix('=').map(str::to_owned))
}

fn cookie_of(headers: &HeaderMap) -> Option<String> {
    cookie_named(headers, COOKIE)
}

/// Not signed in (or the session ended): to the sign-in page.
pub struct SignIn;

impl IntoResponse for SignIn {
    fn into_response(self) -> Response {
        Redirect::to("/ui/login").into_response()
    }
}

impl FromRequestParts<AppState> for UiCaller {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let cookie = cookie_of(&parts.headers).ok_or_else(|| SignIn.into_response())?;
        let token =
            state.ui_key.open(&cookie, state.clock.now().unix_timestamp()).ok_or_else(|| SignIn.into_response())?;
        // Exactly as the API would see `Authorization: Bearer <token>` (client certificates too).
        let bearer = HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| SignIn.into_response())?;
        parts.headers.insert(header::AUTHORIZATION, bearer);
        let caller = Caller::from_request_parts(parts, state).await.map_err(|_| SignIn.into_response())?;
        Ok(Self { caller, cookie })
    }
}

pub(super) fn render(status: StatusCode, t: &impl Template) -> Response {
    match t.render() {
        Ok(html) => (status, [(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"))], html)
            .into_response(),
        Err(e) => {
            tracing::error!(error = %e, "a console page did not render");
            (StatusCode::INTERNAL_SERVER_ERROR, "the page could not be rendered").into_response()
        }
    }
}

#[derive(Template)]
#[template(path = "ui/problem.html")]
struct ProblemPage {
    who: Who,
    title: String,
    detail: String,
    reasons: Vec<String>,
}

/// An API refusal as a page: the same status, the problem's words and reasons.
pub(super) fn problem(who: Who, e: &ApiError) -> Response {
    let reasons = e.errors.iter().map(|c| format!("{}: {}", c.check, c.detail)).collect();
    let title = e.status.canonical_reason().unwrap_or("Refused").to_owned();
    render(e.status, &ProblemPage { who, title, detail: format!("{} ({})", e.detail, e.code), reasons })
}

pub async fn not_found() -> Response {
    let e = ApiError::new(StatusCode::NOT_FOUND, "no_page", "no such page");
    problem(Who::default(), &e)
}

#[derive(Template)]
#[template(path = "ui/login.html")]
struct LoginPage {
    who: Who,
    error: String,
    minutes: i64,
    /// The identity provider's sign-in is offered.
    idp: bool,
}

fn login_page(state: &AppState, status: StatusCode, error: &str) -> Response {
    let page = LoginPage {
        who: Who::default(),
        error: error.to_owned(),
        minutes: SESSION.whole_minutes(),
        idp: state.ui_login.is_some(),
    };
    render(status, &page)
}

pub async fn login_form(State(state): State<AppState>) -> Response {
    login_page(&state, StatusCode::OK, "")
}

#[derive(Deserialize)]
pub struct LoginForm {
    token: String,
}

/// The API caller a token makes, or `None` when the API would refuse it.
async fn caller_of(state: &AppState, token: &str) -> Option<Caller> {
    let bearer = HeaderValue::from_str(&format!("Bearer {token}")).ok()?;
    let (mut parts, ()) = axum::http::Request::new(()).into_parts();
    parts.headers.insert(header::AUTHORIZATION, bearer);
    if token.is_empty() {
        return None;
    }
    Caller::from_request_parts(&mut parts, state).await.ok()
}

/// The session cookie for an accepted token.
fn session_cookie(state: &AppState, token: &str) -> HeaderValue {
    let until = (state.clock.now() + SESSION).unix_timestamp();
    let sealed = state.ui_key.seal(token, until);
    let cookie =
        format!("{COOKIE}={sealed}; Path=/ui; Max-Age={}; HttpOnly; Secure; SameSite=Strict", SESSION.whole_seconds());
    HeaderValue::from_str(&cookie).expect("a cookie header")
}

/// Check the pasted token as the API would, then seal it into the session cookie.
pub async fn login(State(state): State<AppState>, Form(f): Form<LoginForm>) -> Response {
    let token = f.token.trim();
    if caller_of(&state, token).await.is_none() {
        return login_page(&state, StatusCode::UNAUTHORIZED, "That token was not accepted.");
    }
    let mut res = Redirect::to("/ui/").into_response();
    res.headers_mut().insert(header::SET_COOKIE, session_cookie(&state, token));
    res
}

/// The pending sign-in's cookie: `state` and the PKCE verifier, sealed, for ten minutes.
const PENDING: &str = "fulcrum_ui_login";
const PENDING_S: i64 = 600;

fn random_text() -> String {
    use base64::Engine as _;
    let mut b = [0u8; 32];
    aws_lc_rs::rand::fill(&mut b).expect("the system's randomness");
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

/// Start a sign-in at the identity provider: authorization code with PKCE (S256).
pub async fn login_start(State(state): State<AppState>) -> Response {
    let Some(client) = &state.ui_login else {
        return login_page(&state, StatusCode::NOT_FOUND, "No identity provider is configured for the console.");
    };
    let (st, verifier) = (random_text(), random_text());
    let url = match client.authorize_url(&st, &verifier).await {
        Ok(u) => u,
        Err(e) => return login_page(&state, StatusCode::BAD_GATEWAY, &e.to_string()),
    };
    let sealed = state.ui_key.seal(&format!("{st} {verifier}"), state.clock.now().unix_timestamp() + PENDING_S);
    // Lax, not Strict: the callback is a top-level navigation coming back from the IdP's site.
    let cookie = format!("{PENDING}={sealed}; Path=/ui/login; Max-Age={PENDING_S}; HttpOnly; Secure; SameSite=Lax");
    let mut res = Redirect::to(&url).into_response();
    res.headers_mut().insert(header::SET_COOKIE, HeaderValue::from_str(&cookie).expect("a cookie header"));
    res
}

#[derive(Deserialize)]
pub struct Callback {
    #[serde(default)]
    code: String,
    #[serde(default)]
    state: String,
    #[serde(default)]
    error: String,
    #[serde(default)]
    error_description: String,
}

#[derive(Template)]
#[template(path = "ui/signed_in.html")]
struct SignedIn {
    who: Who,
}

/// Back from the identity provider: the `state` must be this browser's pending sign-in; the code
/// is exchanged with its verifier, and the access token is checked like any bearer token.
pub async fn login_callback(State(state): State<AppState>, headers: HeaderMap, Query(q): Query<Callback>) -> Response {
    let Some(client) = &state.ui_login else {
        return login_page(&state, StatusCode::NOT_FOUND, "No identity provider is configured for the console.");
    };
    let pending = cookie_named(&headers, PENDING)
        .and_then(|c| state.ui_key.open(&c, state.clock.now().unix_timestamp()))
        .and_then(|p| p.split_once(' ').map(|(s, v)| (s.to_owned(), v.to_owned())));
    let gone = format!("{PENDING}=; Path=/ui/login; Max-Age=0; HttpOnly; Secure; SameSite=Lax");
    let outcome = async {
        let (st, verifier) = pending.ok_or("This sign-in was not started here, or it took too long. Try again.")?;
        if !q.error.is_empty() {
            return Err(format!("The identity provider refused: {} {}", q.error, q.error_description)
                .trim()
                .to_owned());
        }
        if q.code.is_empty() || !constant_time_eq(q.state.as_bytes(), st.as_bytes()) {
            return Err("The answer does not belong to this sign-in. Try again.".to_owned());
        }
        let token = client.exchange(&q.code, &verifier).await.map_err(|e| e.to_string())?;
        caller_of(&state, &token).await.ok_or("The identity provider's token was not accepted by the registry.")?;
        Ok(token)
    }
    .await;
    let mut res = match outcome {
        Ok(token) => {
            // A page, not a redirect: the session cookie is SameSite=Strict, and a redirect chain
            // that began at the IdP would not send it. The page moves on by itself.
            let mut res = render(StatusCode::OK, &SignedIn { who: Who::default() });
            res.headers_mut().append(header::SET_COOKIE, session_cookie(&state, &token));
            res
        }
        Err(e) => login_page(&state, StatusCode::UNAUTHORIZED, &e),
    };
    res.headers_mut().append(header::SET_COOKIE, HeaderValue::from_str(&gone).expect("a cookie header"));
    res
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && aws_lc_rs::constant_time::verify_slices_are_equal(a, b).is_ok()
}

/// A form POST must come from a console page of this session: its CSRF token, and no foreign
/// `Origin`.
pub(super) fn same_origin_form(
    state: &AppState,
    ui: &UiCaller,
    headers: &HeaderMap,
    csrf: &str,
) -> Result<(), ApiError> {
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("");
    if let Some(origin) = headers.get(header::ORIGIN).and_then(|o| o.to_str().ok())
        && origin != "null"
        && origin.split("://").nth(1) != Some(host)
    {
        return Err(ApiError::forbidden("cross-origin form refused"));
    }
    if !state.ui_key.csrf_ok(&ui.cookie, csrf) {
        return Err(ApiError::forbidden("the form's CSRF token is missing or not this session's"));
    }
    Ok(())
}

#[derive(Deserialize)]
pub struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

pub async fn logout(
    State(state): State<AppState>,
    headers: HeaderMap,
    ui: UiCaller,
    Form(f): Form<CsrfForm>,
) -> Response {
    if let Err(e) = same_origin_form(&state, &ui, &headers, &f.csrf) {
        return problem(ui.who(&state), &e);
    }
    let mut res = Redirect::to("/ui/login").into_response();
    let gone = format!("{COOKIE}=; Path=/ui; Max-Age=0; HttpOnly; Secure; SameSite=Strict");
    res.headers_mut().insert(header::SET_COOKIE, HeaderValue::from_str(&gone).expect("a cookie header"));
    res
}

struct ModelRow {
    name: String,
    domain: String,
    description: String,
    labels: String,
    versions: usize,
    newest: String,
    created: String,
}

#[derive(Template)]
#[template(path = "ui/models.html")]
struct ModelsPage {
    who: Who,
    q: String,
    domain: String,
    label: String,
    stage: String,
    stages: [&'static str; 3],
    models: Vec<ModelRow>,
    /// The list stopped at [`MODELS_SHOWN`]: narrow the filters.
    more: bool,
}

#[derive(Deserialize)]
pub struct ModelsQuery {
    #[serde(default)]
    q: String,
    #[serde(default)]
    domain: String,
    /// `key=value` (or just `key`): a model label.
    #[serde(default)]
    label: String,
    /// Models with a version at this stage and no hold.
    #[serde(default)]
    stage: String,
}

/// Most models one page lists.
const MODELS_SHOWN: usize = 2_000;

/// Models of the caller's tenant (the only tenant a principal speaks for) and domains, filtered
/// by name, domain, label and the stage of a version without a hold.
pub async fn models(State(state): State<AppState>, ui: UiCaller, Query(f): Query<ModelsQuery>) -> Response {
    let who = ui.who(&state);
    if let Err(e) = ui.caller.require(&state, Action::Read).await {
        return problem(who, &e);
    }
    let stage = match f.stage.as_str() {
        "" => None,
        s => match s.parse::<fulcrum_core::lifecycle::Stage>() {
            Ok(st) => Some(st),
            Err(()) => {
                return problem(who, &ApiError::bad_request("bad_stage", "stage is Candidate, Staging or Approved"));
            }
        },
    };
    let (label_key, label_value) = match f.label.split_once('=') {
        Some((k, v)) => (k.trim(), Some(v.trim())),
        None => (f.label.trim(), None),
    };
    let p = &ui.caller.0;
    let mut rows = Vec::new();
    let mut after = String::new();
    let mut more = false;
    'pages: loop {
        let page = match state.store.list_models(&p.tenant, &after, 500).await {
            Ok(p) => p,
            Err(e) => return problem(who, &e.into()),
        };
        let Some(last) = page.last().map(|m| m.name.clone()) else { break };
        for m in page {
            let glance = state.catalog.glance(&m.tenant, &m.name).unwrap_or(crate::catalog::Glance {
                versions: 0,
                live_stages: vec![],
                newest: None,
            });
            let keep = p.may_use_domain(&m.domain)
                && (f.q.is_empty() || m.name.contains(&f.q))
                && (f.domain.is_empty() || m.domain == f.domain)
                && (label_key.is_empty()
                    || m.labels.get(label_key).is_some_and(|v| label_value.is_none_or(|want| v == want)))
                && stage.is_none_or(|st| glance.live_stages.contains(&st));
            if !keep {
                continue;
            }
            if rows.len() == MODELS_SHOWN {
                more = true;
                break 'pages;
            }
            rows.push(ModelRow {
                labels: m.labels.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(", "),
                versions: glance.versions,
                newest: glance.newest.map_or_else(String::new, |(l, st, h)| match h {
                    fulcrum_core::Hold::None => format!("{l} ({})", st.as_str()),
                    h => format!("{l} ({}, {})", st.as_str(), h.as_str()),
                }),
                name: m.name,
                domain: m.domain,
                description: m.description,
                created: m.created_at,
            });
        }
        after = last;
    }
    let page = ModelsPage {
        who,
        q: f.q,
        domain: f.domain,
        label: f.label,
        stage: f.stage,
        stages: ["Candidate", "Staging", "Approved"],
        models: rows,
        more,
    };
    render(StatusCode::OK, &page)
}

struct AliasRow {
    name: String,
    env: String,
    version: String,
    position: u64,
    cause: String,
    /// Its moves, newest first (at most [`ALIAS_MOVES`]): (when, to, cause, by, change/incident)
    history: Vec<(String, String, String, String, String)>,
}

/// Moves shown per alias on a model page.
const ALIAS_MOVES: usize = 20;

struct VersionRow {
    label: String,
    seq: u64,
    stage: String,
    hold: String,
    publisher: String,
    created: String,
}

#[derive(Template)]
#[template(path = "ui/model.html")]
struct ModelPage {
    who: Who,
    name: String,
    description: String,
    domain: String,
    aliases: Vec<AliasRow>,
    versions: Vec<VersionRow>,
}

pub async fn model(State(state): State<AppState>, ui: UiCaller, Path(name): Path<String>) -> Response {
    let who = ui.who(&state);
    let m = match async {
        let n = parse_model_name(&name)?;
        visible_model(&state, &ui.caller, Action::Read, &n).await
    }
    .await
    {
        Ok(m) => m,
        Err(e) => return problem(who, &e),
    };
    let loaded = async {
        let (aliases, versions) =
            tokio::try_join!(state.store.aliases_of(m.id), state.store.latest_versions(m.id, 200))?;
        let mut rows = Vec::with_capacity(aliases.len());
        for a in aliases {
            let moves = state.store.alias_history(m.id, &a.name).await?;
            let history = moves
                .into_iter()
                .rev()
                .take(ALIAS_MOVES)
                .map(|h| {
                    let ids = [h.chg_id, h.inc_id].into_iter().flatten().collect::<Vec<_>>().join(" ");
                    (h.at, h.version.unwrap_or_else(|| "(none)".into()), h.cause, h.actor, ids)
                })
                .collect();
            rows.push(AliasRow {
                name: a.name,
                env: a.env.as_str().to_owned(),
                version: a.version.unwrap_or_else(|| "(none)".into()),
                position: a.position,
                cause: a.cause.as_str().to_owned(),
                history,
            });
        }
        Ok::<_, fulcrum_store::StoreError>((rows, versions))
    }
    .await;
    let (aliases, versions) = match loaded {
        Ok(x) => x,
        Err(e) => return problem(who, &e.into()),
    };
    let versions = versions
        .into_iter()
        .map(|v| VersionRow {
            label: v.label,
            seq: v.seq,
            stage: v.stage.as_str().to_owned(),
            hold: v.hold.as_str().to_owned(),
            publisher: v.publisher,
            created: v.created_at,
        })
        .collect();
    render(
        StatusCode::OK,
        &ModelPage { who, name: m.name, description: m.description, domain: m.domain, aliases, versions },
    )
}

struct IncidentRow {
    id: String,
    severity: String,
    title: String,
    versions: String,
    opened: String,
    state: String,
}

#[derive(Template)]
#[template(path = "ui/incidents.html")]
struct IncidentsPage {
    who: Who,
    incidents: Vec<IncidentRow>,
}

fn state_of(i: &fulcrum_store::IncidentRecord) -> String {
    match (&i.closed_at, &i.closed_by) {
        (Some(at), Some(by)) => format!("closed {at} by {by}"),
        _ => "open".to_owned(),
    }
}

/// The tenant's incidents (the API's list: versions outside the caller's domains left out).
pub async fn incidents(State(state): State<AppState>, ui: UiCaller) -> Response {
    let who = ui.who(&state);
    match crate::routes::incidents::list_for(&state, &ui.caller, false, 200).await {
        Ok(list) => {
            let incidents = list
                .iter()
                .map(|i| IncidentRow {
                    id: i.id.clone(),
                    severity: i.severity.clone(),
                    title: i.title.clone(),
                    versions: i
                        .versions
                        .iter()
                        .map(|v| format!("{}@{}", v.model, v.version))
                        .collect::<Vec<_>>()
                        .join(", "),
                    opened: format!("{} by {}", i.opened_at, i.opened_by),
                    state: state_of(i),
                })
                .collect();
            render(StatusCode::OK, &IncidentsPage { who, incidents })
        }
        Err(e) => problem(who, &e),
    }
}

#[derive(Template)]
#[template(path = "ui/incident.html")]
struct IncidentPage {
    who: Who,
    id: String,
    title: String,
    severity: String,
    opened: String,
    state: String,
    t0: String,
    complete: bool,
    /// (name, status, quiesce, purge, reload, validated)
    replicas: Vec<(String, String, String, String, String, String)>,
    missing: String,
    /// (T+, step, by, version, detail)
    steps: Vec<(String, String, String, String, String)>,
}

/// One incident and its timeline T0→T+N.
pub async fn incident(State(state): State<AppState>, ui: UiCaller, Path(id): Path<String>) -> Response {
    let who = ui.who(&state);
    let got = crate::routes::incidents::with_timeline(&state, &ui.caller, &id).await;
    let (i, t) = match got {
        Ok(x) => x,
        Err(e) => return problem(who, &e),
    };
    let ms = |x: Option<i64>| x.map_or_else(|| "—".to_owned(), |m| format!("{:.3} s", m as f64 / 1e3));
    let page = IncidentPage {
        who,
        state: state_of(&i),
        opened: format!("{} by {}", i.opened_at, i.opened_by),
        id: i.id,
        title: i.title,
        severity: i.severity,
        t0: t.t0.clone().unwrap_or_else(|| "(nothing withdrawn yet)".into()),
        complete: t.complete,
        replicas: t
            .replicas
            .iter()
            .map(|r| {
                let purge = match &r.purge_error {
                    Some(e) => format!("{} FAILED: {e}", ms(r.purge_ms)),
                    None => ms(r.purge_ms),
                };
                let reload = format!("{} ({})", ms(r.reload_ms), r.reloaded.as_deref().unwrap_or("—"));
                (r.name.clone(), r.status.clone(), ms(r.quiesce_ms), purge, reload, ms(r.validated_ms))
            })
            .collect(),
        missing: t.missing.join(", "),
        steps: t
            .steps
            .iter()
            .map(|s| {
                (
                    format!("{:.3} s", s.delay_ms as f64 / 1e3),
                    s.step.clone(),
                    s.by.clone().unwrap_or_default(),
                    s.version.as_ref().map(|v| format!("{}@{v}", s.model)).unwrap_or_default(),
                    s.detail.clone().unwrap_or_default(),
                )
            })
            .collect(),
    };
    render(StatusCode::OK, &page)
}

/// The version page's live updates: the API's event stream for the model (server-sent events),
/// with the session's identity, after the same visibility check as the page.
pub async fn live(
    State(state): State<AppState>,
    headers: HeaderMap,
    ui: UiCaller,
    Path((name, label)): Path<(String, String)>,
) -> Response {
    let who = ui.who(&state);
    let model = match load_version(&state, &ui.caller, &name, &label).await {
        Ok((m, _)) => m.name,
        Err(e) => return problem(who, &e),
    };
    let q = crate::dto::EventsQuery {
        after: None,
        limit: None,
        model: Some(model),
        types: Some("revocation,quarantined,quarantine_released,approval,promotion,alias_updated".into()),
    };
    match crate::routes::events::stream_events(State(state), ui.caller, headers, crate::routes::ApiQuery(q)).await {
        Ok(sse) => sse.into_response(),
        Err(e) => problem(who, &e),
    }
}
