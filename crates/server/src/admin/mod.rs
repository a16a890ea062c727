//! The admin API under `/admin/api/v1` (poem-openapi): tenants, clients, organisations, audit
//! log.
//!
//! Callers present an access token that this provider issued via `client_credentials` to an
//! admin client of the production environment: scope `admin` (operators) or `tenant-admin`
//! (the admins of one tenant, who see nothing of other tenants).

mod dto;

use std::time::Duration;

use dto::{
    AuditList, AuditView, ClientConfig, ClientCreate, ClientList, ClientView, ClientWithSecret, EnvironmentDto,
    InitialAccessTokenCreate, InitialAccessTokenView, RotateSecret, SamlClientCreate, SamlMetadataSource, TenantCreate,
    TenantList, TenantStatusDto, TenantUpdate, TenantView,
};
pub(crate) use dto::{FieldProblem, Problem};
use oidc_core::{ClientId, Environment, OAuthErrorCode, TenantId};
use poem::web::Data;
use poem_openapi::{
    ApiResponse, OpenApi, OpenApiService, SecurityScheme, Tags,
    auth::Bearer,
    param::{Header, Path, Query},
    payload::Json,
};
use tenant_registry::{
    Actor, AdminRole, AuditFilter, Client, ClientFilter, PageRequest, Tenant, TenantFilter, TenantStatus,
};
use time::{OffsetDateTime, format_description::well_known::Rfc3339};

use crate::{
    error::AdminError,
    flows::{
        registration,
        saml::sp,
        token::{LiveGrant, live_grant},
    },
    state::AppState,
};

/// Groups of operations in the document.
#[derive(Tags)]
enum ApiTags {
    /// Authorities: created by operators, seen by their own tenant admins.
    Tenants,
    /// Services of a tenant, per environment.
    Clients,
    /// Who changed what, when.
    Audit,
    /// Company accounts: operators see all; a tenant admin those that acted towards its clients.
    Organisations,
}

/// Bearer access token of an admin client.
#[derive(SecurityScheme)]
#[oai(ty = "bearer", bearer_format = "opaque access token from the production token endpoint (client_credentials)")]
pub(crate) struct AdminToken(Bearer);

type AdminResult<T> = Result<T, AdminError>;

fn etag(version: i64) -> String {
    format!("\"{version}\"")
}

/// The version an `If-Match` names; `None` for `*` (any). A value that names no version of
/// ours can match nothing: it is reported as a version mismatch.
fn if_match(value: &str, current: impl FnOnce() -> i64) -> AdminResult<i64> {
    let value = value.trim();
    if value == "*" {
        return Ok(current());
    }
    value
        .trim_start_matches("W/")
        .trim_matches('"')
        .parse()
        .map_err(|_| AdminError::precondition_failed("If-Match names no version of this object"))
}

fn page(limit: Option<u32>, offset: Option<u64>) -> PageRequest {
    PageRequest { limit: limit.unwrap_or(50).clamp(1, 500), offset: offset.unwrap_or(0) }
}

fn tenant_id(text: &str) -> AdminResult<TenantId> {
    text.parse::<uuid::Uuid>().map(TenantId::from).map_err(|_| AdminError::not_found())
}

fn client_id(text: &str) -> AdminResult<ClientId> {
    ClientId::parse(text).ok_or_else(AdminError::not_found)
}

fn time_param(field: &str, text: Option<String>) -> AdminResult<Option<OffsetDateTime>> {
    text.map(|t| {
        OffsetDateTime::parse(&t, &Rfc3339)
            .map_err(|_| AdminError::invalid_field(field, "an RFC 3339 time, e.g. 2026-11-22T10:00:00Z"))
    })
    .transpose()
}

/// Who the bearer is: checked on every request against the token's client as it is now
/// (it exists, its tenant is active, it still has the role the token's scope was granted for),
/// so deleting, demoting or suspending takes effect at once on every node.
async fn actor(state: &AppState, token: &AdminToken) -> AdminResult<Actor> {
    let found = live_grant(state, "admin.token", &token.0.token).await.map_err(|e| match e.code {
        OAuthErrorCode::TemporarilyUnavailable => AdminError::unavailable(),
        _ => AdminError::internal(&e),
    })?;
    let Some(LiveGrant { grant, client, tenant }) =
        found.filter(|live| live.grant.environment == Environment::Production)
    else {
        return Err(AdminError::unauthorized(
            "The access token is unknown, expired, not from the production issuer, or its client or tenant is gone or suspended.",
        ));
    };
    let has = |scope: &str| grant.scopes.iter().any(|s| s == scope);
    match client.admin_role {
        Some(AdminRole::Operator) if has("admin") => Ok(Actor::Operator(grant.client_id)),
        Some(AdminRole::TenantAdmin) if has("tenant-admin") => {
            Ok(Actor::TenantAdmin { client_id: grant.client_id, tenant_id: tenant.id })
        }
        _ if has("admin") || has("tenant-admin") => {
            Err(AdminError::unauthorized("The access token's client no longer has the role it was issued for."))
        }
        _ => Err(AdminError::forbidden("The access token lacks the scope admin or tenant-admin.")),
    }
}

#[derive(ApiResponse)]
enum TenantResponse {
    /// The tenant.
    #[oai(status = 200)]
    Ok(Json<TenantView>, #[oai(header = "ETag")] String),
}

fn tenant_response(tenant: &Tenant) -> TenantResponse {
    TenantResponse::Ok(Json(tenant.into()), etag(tenant.version))
}

#[derive(ApiResponse)]
enum TenantCreated {
    /// Created.
    #[oai(status = 201)]
    Created(Json<TenantView>, #[oai(header = "ETag")] String, #[oai(header = "Location")] String),
}

#[derive(ApiResponse)]
enum TenantListResponse {
    /// One page.
    #[oai(status = 200)]
    Ok(Json<TenantList>),
}

#[derive(ApiResponse)]
enum Deleted {
    /// Deleted.
    #[oai(status = 204)]
    NoContent,
}

#[derive(ApiResponse)]
enum ClientResponse {
    /// The client.
    #[oai(status = 200)]
    Ok(Json<ClientView>, #[oai(header = "ETag")] String),
}

fn client_response(client: &Client) -> ClientResponse {
    ClientResponse::Ok(Json(client.into()), etag(client.version))
}

#[derive(ApiResponse)]
enum ClientCreated {
    /// Created; the secret is in this response only.
    #[oai(status = 201)]
    Created(Json<ClientWithSecret>, #[oai(header = "ETag")] String, #[oai(header = "Location")] String),
}

fn client_created(client: &Client, secret: Option<tenant_registry::ClientSecret>) -> ClientCreated {
    ClientCreated::Created(
        Json(ClientWithSecret { client: client.into(), client_secret: secret.map(|s| s.expose().to_owned()) }),
        etag(client.version),
        format!("/admin/api/v1/clients/{}", client.client_id),
    )
}

#[derive(ApiResponse)]
enum SecretRotated {
    /// The new secret, in this response only; the old one works until its `expires_at`.
    #[oai(status = 200)]
    Ok(Json<ClientWithSecret>, #[oai(header = "ETag")] String),
}

#[derive(ApiResponse)]
enum InitialAccessTokenCreated {
    /// Created; the token is in this response only.
    #[oai(status = 201)]
    Created(Json<InitialAccessTokenView>),
}

#[derive(ApiResponse)]
enum ClientListResponse {
    /// One page.
    #[oai(status = 200)]
    Ok(Json<ClientList>),
}

#[derive(ApiResponse)]
enum OneTimeTransferResponse {
    /// Newest first.
    #[oai(status = 200)]
    Ok(Json<dto::OneTimeTransferList>),
}

#[derive(ApiResponse)]
enum OrganisationResponse {
    /// The organisation.
    #[oai(status = 200)]
    Ok(Json<dto::OrganisationView>),
}

#[derive(ApiResponse)]
enum OrganisationListResponse {
    /// One page, newest first.
    #[oai(status = 200)]
    Ok(Json<dto::OrganisationList>),
}

#[derive(ApiResponse)]
enum AuditResponse {
    /// One page, newest first.
    #[oai(status = 200)]
    Ok(Json<AuditList>),
}

/// The operations of the admin API.
pub(crate) struct AdminApi;

#[OpenApi]
impl AdminApi {
    /// Create a tenant (operators).
    #[oai(path = "/tenants", method = "post", tag = "ApiTags::Tenants")]
    async fn create_tenant(
        &self,
        state: Data<&AppState>,
        auth: AdminToken,
        body: Json<TenantCreate>,
    ) -> AdminResult<TenantCreated> {
        let actor = actor(&state, &auth).await?;
        let new = body.0.into_domain().map_err(AdminError::invalid)?;
        let tenant = state.registry.create_tenant(&actor, new).await?;
        let location = format!("/admin/api/v1/tenants/{}", tenant.id);
        Ok(TenantCreated::Created(Json((&tenant).into()), etag(tenant.version), location))
    }

    /// List tenants, by slug (a tenant admin sees only its own).
    #[oai(path = "/tenants", method = "get", tag = "ApiTags::Tenants")]
    async fn list_tenants(
        &self,
        state: Data<&AppState>,
        auth: AdminToken,
        /// 1–500, default 50.
        limit: Query<Option<u32>>,
        offset: Query<Option<u64>>,
        status: Query<Option<TenantStatusDto>>,
        /// Part of the name or slug.
        search: Query<Option<String>>,
    ) -> AdminResult<TenantListResponse> {
        let actor = actor(&state, &auth).await?;
        let page = page(limit.0, offset.0);
        let filter = TenantFilter { status: status.0.map(Into::into), search: search.0, only: None };
        let found = state.registry.list_tenants(&actor, filter, page).await?;
        Ok(TenantListResponse::Ok(Json(TenantList {
            items: found.items.iter().map(Into::into).collect(),
            total: found.total,
            limit: page.limit,
            offset: page.offset,
        })))
    }

    /// One tenant.
    #[oai(path = "/tenants/:id", method = "get", tag = "ApiTags::Tenants")]
    async fn get_tenant(
        &self,
        state: Data<&AppState>,
        auth: AdminToken,
        id: Path<String>,
    ) -> AdminResult<TenantResponse> {
        let actor = actor(&state, &auth).await?;
        Ok(tenant_response(&state.registry.get_tenant(&actor, tenant_id(&id.0)?).await?))
    }

    /// Replace a tenant's fields (operators). Needs `If-Match` with the current ETag.
    #[oai(path = "/tenants/:id", method = "put", tag = "ApiTags::Tenants")]
    async fn update_tenant(
        &self,
        state: Data<&AppState>,
        auth: AdminToken,
        id: Path<String>,
        #[oai(name = "If-Match")] if_match_header: Header<Option<String>>,
        body: Json<TenantUpdate>,
    ) -> AdminResult<TenantResponse> {
        let actor = actor(&state, &auth).await?;
        let id = tenant_id(&id.0)?;
        let current = state.registry.get_tenant(&actor, id).await?;
        let header = if_match_header.0.ok_or_else(AdminError::precondition_required)?;
        let expected = if_match(&header, || current.version)?;
        let changes = body.0.into_domain().map_err(AdminError::invalid)?;
        Ok(tenant_response(&state.registry.update_tenant(&actor, id, expected, changes).await?))
    }

    /// Suspend a tenant: no logins and no tokens for any of its clients, at once (operators).
    #[oai(path = "/tenants/:id/suspend", method = "post", tag = "ApiTags::Tenants")]
    async fn suspend_tenant(
        &self,
        state: Data<&AppState>,
        auth: AdminToken,
        id: Path<String>,
        #[oai(name = "If-Match")] if_match_header: Header<Option<String>>,
    ) -> AdminResult<TenantResponse> {
        self.set_status(&state, &auth, &id.0, if_match_header.0, TenantStatus::Suspended).await
    }

    /// Resume a suspended tenant (operators).
    #[oai(path = "/tenants/:id/resume", method = "post", tag = "ApiTags::Tenants")]
    async fn resume_tenant(
        &self,
        state: Data<&AppState>,
        auth: AdminToken,
        id: Path<String>,
        #[oai(name = "If-Match")] if_match_header: Header<Option<String>>,
    ) -> AdminResult<TenantResponse> {
        self.set_status(&state, &auth, &id.0, if_match_header.0, TenantStatus::Active).await
    }

    /// Delete a tenant that has no clients left (operators).
    #[oai(path = "/tenants/:id", method = "delete", tag = "ApiTags::Tenants")]
    async fn delete_tenant(
        &self,
        state: Data<&AppState>,
        auth: AdminToken,
        id: Path<String>,
        #[oai(name = "If-Match")] if_match_header: Header<Option<String>>,
    ) -> AdminResult<Deleted> {
        let actor = actor(&state, &auth).await?;
        let id = tenant_id(&id.0)?;
        let expected = match if_match_header.0 {
            Some(header) => {
                let current = state.registry.get_tenant(&actor, id).await?;
                Some(if_match(&header, || current.version)?)
            }
            None => None,
        };
        state.registry.delete_tenant(&actor, id, expected).await?;
        Ok(Deleted::NoContent)
    }

    /// Create a client of a tenant in one environment; its secret is shown once.
    #[oai(path = "/tenants/:id/clients", method = "post", tag = "ApiTags::Clients")]
    async fn create_client(
        &self,
        state: Data<&AppState>,
        auth: AdminToken,
        id: Path<String>,
        body: Json<ClientCreate>,
    ) -> AdminResult<ClientCreated> {
        let actor = actor(&state, &auth).await?;
        let tenant = tenant_id(&id.0)?;
        let environment: Environment = body.0.environment.into();
        let (settings, flags) = body.0.config.into_domain().map_err(AdminError::invalid)?;
        let (client, secret) = state.registry.create_client(&actor, tenant, environment, settings, flags).await?;
        Ok(client_created(&client, secret))
    }

    /// Create a SAML service provider of a tenant in one environment from its metadata (the
    /// document, or an https URL it is read from now and on refresh). No secret: the SP is known
    /// by its entity id and certificates.
    #[oai(path = "/tenants/:id/saml-clients", method = "post", tag = "ApiTags::Clients")]
    async fn create_saml_client(
        &self,
        state: Data<&AppState>,
        auth: AdminToken,
        id: Path<String>,
        body: Json<SamlClientCreate>,
    ) -> AdminResult<ClientCreated> {
        let actor = actor(&state, &auth).await?;
        let tenant = tenant_id(&id.0)?;
        let environment: Environment = body.0.environment.into();
        let source = body.0.source.clone();
        let source = sp::MetadataSource::of(source.metadata, source.metadata_url).map_err(AdminError::invalid)?;
        let saml = sp::read_metadata(&state, environment, source).await.map_err(AdminError::invalid)?;
        let settings = body.0.settings(saml).map_err(AdminError::invalid)?;
        let flags = tenant_registry::OperatorFlags::default();
        let (client, secret) = state.registry.create_client(&actor, tenant, environment, settings, flags).await?;
        Ok(client_created(&client, secret))
    }

    /// Read a SAML service provider's metadata again: from the document given, or else from its
    /// `metadata_url`. Entity id, addresses and certificates follow the metadata; the tenant's
    /// choices stay (metadata that says requests are signed turns that requirement on).
    #[oai(path = "/clients/:client_id/saml-metadata", method = "post", tag = "ApiTags::Clients")]
    async fn refresh_saml_metadata(
        &self,
        state: Data<&AppState>,
        auth: AdminToken,
        client_id: Path<String>,
        body: Json<SamlMetadataSource>,
    ) -> AdminResult<ClientResponse> {
        let actor = actor(&state, &auth).await?;
        let id = self::client_id(&client_id.0)?;
        let current = state.registry.get_client(&actor, &id).await?;
        let Some(saml) = current.settings.saml.clone() else {
            return Err(AdminError::invalid_field("client_id", "not a SAML service provider"));
        };
        let url = body.0.metadata_url.or_else(|| saml.metadata_url.as_ref().map(ToString::to_string));
        let url = if body.0.metadata.is_some() { None } else { url };
        let source = sp::MetadataSource::of(body.0.metadata, url).map_err(AdminError::invalid)?;
        let fresh = sp::read_metadata(&state, current.environment, source).await.map_err(AdminError::invalid)?;
        let settings =
            tenant_registry::ClientSettings { saml: Some(sp::refreshed(&saml, fresh)), ..current.settings.clone() };
        let flags = tenant_registry::OperatorFlags { first_party: current.first_party, admin_role: current.admin_role };
        Ok(client_response(&state.registry.update_client(&actor, &id, current.version, settings, flags).await?))
    }

    /// Issue a single-use initial access token for RFC 7591 dynamic registration of one client
    /// of this tenant in one environment.
    #[oai(path = "/tenants/:id/initial-access-tokens", method = "post", tag = "ApiTags::Clients")]
    async fn create_initial_access_token(
        &self,
        state: Data<&AppState>,
        auth: AdminToken,
        id: Path<String>,
        body: Json<InitialAccessTokenCreate>,
    ) -> AdminResult<InitialAccessTokenCreated> {
        let actor = actor(&state, &auth).await?;
        let tenant = state.registry.get_tenant(&actor, tenant_id(&id.0)?).await?;
        let lifetime = Duration::from_secs(body.0.expires_in_seconds);
        if !(Duration::from_secs(60)..=registration::MAX_INITIAL_TOKEN_LIFETIME).contains(&lifetime) {
            return Err(AdminError::invalid_field("expires_in_seconds", "60 to 2592000"));
        }
        let environment: Environment = body.0.environment.into();
        let token = registration::issue_initial_access_token(&state, tenant.id, environment, lifetime)
            .await
            .map_err(|e| AdminError::internal(&e))?;
        let expires_at = state.clock.now() + lifetime;
        state.registry.record_initial_access_token(&actor, tenant.id, environment, expires_at).await?;
        Ok(InitialAccessTokenCreated::Created(Json(InitialAccessTokenView {
            initial_access_token: token,
            registration_endpoint: format!("{}/register", state.config.environments.issuer(environment)),
            tenant_id: tenant.id.to_string(),
            environment: environment.into(),
            expires_at: expires_at.format(&Rfc3339).unwrap_or_default(),
        })))
    }

    /// List clients (a tenant admin sees only its tenant's).
    #[oai(path = "/clients", method = "get", tag = "ApiTags::Clients")]
    async fn list_clients(
        &self,
        state: Data<&AppState>,
        auth: AdminToken,
        tenant_id: Query<Option<String>>,
        environment: Query<Option<EnvironmentDto>>,
        limit: Query<Option<u32>>,
        offset: Query<Option<u64>>,
    ) -> AdminResult<ClientListResponse> {
        let actor = actor(&state, &auth).await?;
        let page = page(limit.0, offset.0);
        let tenant = match tenant_id.0 {
            Some(text) => Some(
                text.parse::<uuid::Uuid>()
                    .map(TenantId::from)
                    .map_err(|_| AdminError::invalid_field("tenant_id", "a tenant id (UUID)"))?,
            ),
            None => None,
        };
        let filter =
            ClientFilter { tenant_id: tenant, environment: environment.0.map(Into::into), ..ClientFilter::default() };
        let found = state.registry.list_clients(&actor, filter, page).await?;
        Ok(ClientListResponse::Ok(Json(ClientList {
            items: found.items.iter().map(Into::into).collect(),
            total: found.total,
            limit: page.limit,
            offset: page.offset,
        })))
    }

    /// One client.
    #[oai(path = "/clients/:client_id", method = "get", tag = "ApiTags::Clients")]
    async fn get_client(
        &self,
        state: Data<&AppState>,
        auth: AdminToken,
        client_id: Path<String>,
    ) -> AdminResult<ClientResponse> {
        let actor = actor(&state, &auth).await?;
        Ok(client_response(&state.registry.get_client(&actor, &self::client_id(&client_id.0)?).await?))
    }

    /// The one-time identifications with the ID card this client received: which claims, when;
    /// never values or persons (there is no account).
    #[oai(path = "/clients/:client_id/one-time-transfers", method = "get", tag = "ApiTags::Clients")]
    async fn one_time_transfers(
        &self,
        state: Data<&AppState>,
        auth: AdminToken,
        client_id: Path<String>,
    ) -> AdminResult<OneTimeTransferResponse> {
        let actor = actor(&state, &auth).await?;
        let client = state.registry.get_client(&actor, &self::client_id(&client_id.0)?).await?;
        let transfers = state
            .accounts
            .one_time_transfers(client.environment, client.client_id.as_str())
            .await
            .map_err(|e| AdminError::internal(&e))?;
        let items = transfers
            .into_iter()
            .map(|t| dto::OneTimeTransferView {
                recipient: t.recipient,
                claims: t.claims,
                at: t.at.format(&Rfc3339).unwrap_or_default(),
            })
            .collect();
        Ok(OneTimeTransferResponse::Ok(Json(dto::OneTimeTransferList { items })))
    }

    /// Replace a client's configuration. Needs `If-Match` with the current ETag.
    #[oai(path = "/clients/:client_id", method = "put", tag = "ApiTags::Clients")]
    async fn update_client(
        &self,
        state: Data<&AppState>,
        auth: AdminToken,
        client_id: Path<String>,
        #[oai(name = "If-Match")] if_match_header: Header<Option<String>>,
        body: Json<ClientConfig>,
    ) -> AdminResult<ClientResponse> {
        let actor = actor(&state, &auth).await?;
        let id = self::client_id(&client_id.0)?;
        let current = state.registry.get_client(&actor, &id).await?;
        let header = if_match_header.0.ok_or_else(AdminError::precondition_required)?;
        let expected = if_match(&header, || current.version)?;
        let (settings, flags) = body.0.into_domain().map_err(AdminError::invalid)?;
        Ok(client_response(&state.registry.update_client(&actor, &id, expected, settings, flags).await?))
    }

    /// Rotate the secret; the old one keeps working for `overlap_seconds`.
    #[oai(path = "/clients/:client_id/secret", method = "post", tag = "ApiTags::Clients")]
    async fn rotate_secret(
        &self,
        state: Data<&AppState>,
        auth: AdminToken,
        client_id: Path<String>,
        #[oai(name = "If-Match")] if_match_header: Header<Option<String>>,
        body: Json<RotateSecret>,
    ) -> AdminResult<SecretRotated> {
        let actor = actor(&state, &auth).await?;
        let id = self::client_id(&client_id.0)?;
        let expected = match if_match_header.0 {
            Some(header) => {
                let current = state.registry.get_client(&actor, &id).await?;
                Some(if_match(&header, || current.version)?)
            }
            None => None,
        };
        let overlap = Duration::from_secs(body.0.overlap_seconds);
        let (client, secret) = state.registry.rotate_secret(&actor, &id, overlap, expected).await?;
        Ok(SecretRotated::Ok(
            Json(ClientWithSecret { client: (&client).into(), client_secret: Some(secret.expose().to_owned()) }),
            etag(client.version),
        ))
    }

    /// Copy a test client to production with new credentials, checked against production rules.
    #[oai(path = "/clients/:client_id/promote", method = "post", tag = "ApiTags::Clients")]
    async fn promote_client(
        &self,
        state: Data<&AppState>,
        auth: AdminToken,
        client_id: Path<String>,
    ) -> AdminResult<ClientCreated> {
        let actor = actor(&state, &auth).await?;
        let (client, secret) = state.registry.promote_client(&actor, &self::client_id(&client_id.0)?).await?;
        Ok(client_created(&client, secret))
    }

    /// Delete a client.
    #[oai(path = "/clients/:client_id", method = "delete", tag = "ApiTags::Clients")]
    async fn delete_client(
        &self,
        state: Data<&AppState>,
        auth: AdminToken,
        client_id: Path<String>,
        #[oai(name = "If-Match")] if_match_header: Header<Option<String>>,
    ) -> AdminResult<Deleted> {
        let actor = actor(&state, &auth).await?;
        let id = self::client_id(&client_id.0)?;
        let expected = match if_match_header.0 {
            Some(header) => {
                let current = state.registry.get_client(&actor, &id).await?;
                Some(if_match(&header, || current.version)?)
            }
            None => None,
        };
        state.registry.delete_client(&actor, &id, expected).await?;
        Ok(Deleted::NoContent)
    }

    /// Organisations of an environment (default production), newest first: all for operators,
    /// for a tenant admin those whose data went to one of its clients.
    #[oai(path = "/organisations", method = "get", tag = "ApiTags::Organisations")]
    async fn list_organisations(
        &self,
        state: Data<&AppState>,
        auth: AdminToken,
        environment: Query<Option<EnvironmentDto>>,
        limit: Query<Option<u32>>,
        offset: Query<Option<u64>>,
    ) -> AdminResult<OrganisationListResponse> {
        let actor = actor(&state, &auth).await?;
        let environment = environment.0.map_or(Environment::Production, Environment::from);
        let page = page(limit.0, offset.0);
        let offset = u32::try_from(page.offset).unwrap_or(u32::MAX);
        let found =
            state.organisations.list(environment, page.limit, offset).await.map_err(|e| AdminError::internal(&e))?;
        let clients = self.tenant_clients(&state, &actor, environment).await?;
        let mut items = Vec::with_capacity(found.len());
        for organisation in &found {
            if self.visible(&state, clients.as_deref(), organisation).await? {
                items.push(dto::OrganisationView::from(organisation));
            }
        }
        Ok(OrganisationListResponse::Ok(Json(dto::OrganisationList { items, limit: page.limit, offset: page.offset })))
    }

    /// One organisation.
    #[oai(path = "/organisations/:id", method = "get", tag = "ApiTags::Organisations")]
    async fn get_organisation(
        &self,
        state: Data<&AppState>,
        auth: AdminToken,
        id: Path<String>,
        environment: Query<Option<EnvironmentDto>>,
    ) -> AdminResult<OrganisationResponse> {
        let actor = actor(&state, &auth).await?;
        let environment = environment.0.map_or(Environment::Production, Environment::from);
        let organisation = self.visible_organisation(&state, &actor, environment, &id.0).await?;
        Ok(OrganisationResponse::Ok(Json(dto::OrganisationView::from(&organisation))))
    }

    /// Marks a part of the organisation's data verified, with the evidence (audited). A later
    /// change of that part by the organisation drops the mark.
    #[oai(path = "/organisations/:id/verify", method = "post", tag = "ApiTags::Organisations")]
    async fn verify_organisation(
        &self,
        state: Data<&AppState>,
        auth: AdminToken,
        id: Path<String>,
        environment: Query<Option<EnvironmentDto>>,
        body: Json<dto::OrganisationVerify>,
    ) -> AdminResult<OrganisationResponse> {
        let actor = actor(&state, &auth).await?;
        let environment = environment.0.map_or(Environment::Production, Environment::from);
        let before = self.visible_organisation(&state, &actor, environment, &id.0).await?;
        let Some(field) = account_service::OrganisationField::parse(&body.0.field) else {
            return Err(AdminError::invalid_field("field", "one of name, legal_form, register, address"));
        };
        let after =
            match state.organisations.verify(environment, before.id, field, &actor.label(), &body.0.evidence).await {
                Ok(after) => after,
                Err(account_service::OrganisationError::Invalid(problems)) => {
                    let (field, _) = problems.first().copied().unwrap_or(("evidence", ""));
                    let expected = if field == "field" {
                        "a part the organisation has (it has no register entry)"
                    } else {
                        "a non-empty text of at most 200 characters"
                    };
                    return Err(AdminError::invalid_field(field, expected));
                }
                Err(e) => return Err(AdminError::internal(&e)),
            };
        audit_organisation(&state, &actor, "organisation.verify", &before, &after).await?;
        Ok(OrganisationResponse::Ok(Json(dto::OrganisationView::from(&after))))
    }

    /// Suspends the organisation: nobody can act for it or invite to it (audited).
    #[oai(path = "/organisations/:id/suspend", method = "post", tag = "ApiTags::Organisations")]
    async fn suspend_organisation(
        &self,
        state: Data<&AppState>,
        auth: AdminToken,
        id: Path<String>,
        environment: Query<Option<EnvironmentDto>>,
    ) -> AdminResult<OrganisationResponse> {
        self.set_organisation_status(
            &state,
            &auth,
            &id.0,
            environment.0,
            account_service::OrganisationStatus::Suspended,
        )
        .await
    }

    /// Lifts a suspension (audited).
    #[oai(path = "/organisations/:id/resume", method = "post", tag = "ApiTags::Organisations")]
    async fn resume_organisation(
        &self,
        state: Data<&AppState>,
        auth: AdminToken,
        id: Path<String>,
        environment: Query<Option<EnvironmentDto>>,
    ) -> AdminResult<OrganisationResponse> {
        self.set_organisation_status(&state, &auth, &id.0, environment.0, account_service::OrganisationStatus::Active)
            .await
    }

    /// The audit log, newest first (a tenant admin sees only its tenant's entries).
    #[oai(path = "/audit", method = "get", tag = "ApiTags::Audit")]
    #[allow(clippy::too_many_arguments)]
    async fn audit(
        &self,
        state: Data<&AppState>,
        auth: AdminToken,
        tenant_id: Query<Option<String>>,
        #[oai(name = "actor")] actor_label: Query<Option<String>>,
        action: Query<Option<String>>,
        /// RFC 3339, inclusive.
        since: Query<Option<String>>,
        /// RFC 3339, exclusive.
        until: Query<Option<String>>,
        limit: Query<Option<u32>>,
        offset: Query<Option<u64>>,
    ) -> AdminResult<AuditResponse> {
        let actor = actor(&state, &auth).await?;
        let page = page(limit.0, offset.0);
        let tenant = match tenant_id.0 {
            Some(text) => Some(
                text.parse::<uuid::Uuid>()
                    .map(TenantId::from)
                    .map_err(|_| AdminError::invalid_field("tenant_id", "a tenant id (UUID)"))?,
            ),
            None => None,
        };
        let filter = AuditFilter {
            tenant_id: tenant,
            actor: actor_label.0,
            action: action.0,
            since: time_param("since", since.0)?,
            until: time_param("until", until.0)?,
        };
        let found = state.registry.audit_log(&actor, filter, page).await?;
        Ok(AuditResponse::Ok(Json(AuditList {
            items: found.items.iter().map(AuditView::from).collect(),
            total: found.total,
            limit: page.limit,
            offset: page.offset,
        })))
    }
}

impl AdminApi {
    /// The organisation `id` of `environment` if `actor` may see it: operators every one, a
    /// tenant admin one whose data went to a client of its tenant; else 404 (as for anything
    /// of another tenant).
    async fn visible_organisation(
        &self,
        state: &AppState,
        actor: &Actor,
        environment: Environment,
        id: &str,
    ) -> AdminResult<account_service::Organisation> {
        let id = id.parse::<account_service::OrganisationId>().map_err(|_| AdminError::not_found())?;
        let organisation = match state.organisations.get(environment, id).await {
            Ok(organisation) => organisation,
            Err(account_service::OrganisationError::Forbidden) => return Err(AdminError::not_found()),
            Err(e) => return Err(AdminError::internal(&e)),
        };
        let clients = self.tenant_clients(state, actor, environment).await?;
        if self.visible(state, clients.as_deref(), &organisation).await? {
            Ok(organisation)
        } else {
            Err(AdminError::not_found())
        }
    }

    /// The client ids of a tenant admin's own tenant in `environment`; `None` for an operator,
    /// who sees every organisation. Read once per request, not per organisation.
    async fn tenant_clients(
        &self,
        state: &AppState,
        actor: &Actor,
        environment: Environment,
    ) -> AdminResult<Option<Vec<String>>> {
        let Actor::TenantAdmin { .. } = actor else { return Ok(None) };
        let filter = ClientFilter { environment: Some(environment), ..ClientFilter::default() };
        let clients = state.registry.list_clients(actor, filter, PageRequest { limit: 500, offset: 0 }).await?;
        Ok(Some(clients.items.into_iter().map(|c| c.client_id.to_string()).collect()))
    }

    /// Whether an organisation is visible to whom `clients` names ([`Self::tenant_clients`]):
    /// to a tenant admin when its data went to one of them.
    async fn visible(
        &self,
        state: &AppState,
        clients: Option<&[String]>,
        organisation: &account_service::Organisation,
    ) -> AdminResult<bool> {
        let Some(clients) = clients else { return Ok(true) };
        let transfers = state
            .accounts
            .organisation_transfers(organisation.environment, &organisation.id.to_string())
            .await
            .map_err(|e| AdminError::internal(&e))?;
        Ok(transfers.iter().any(|(_, t)| clients.contains(&t.client_id)))
    }

    async fn set_organisation_status(
        &self,
        state: &AppState,
        auth: &AdminToken,
        id: &str,
        environment: Option<EnvironmentDto>,
        status: account_service::OrganisationStatus,
    ) -> AdminResult<OrganisationResponse> {
        let actor = actor(state, auth).await?;
        let environment = environment.map_or(Environment::Production, Environment::from);
        let before = self.visible_organisation(state, &actor, environment, id).await?;
        let after = state
            .organisations
            .set_status(environment, before.id, status)
            .await
            .map_err(|e| AdminError::internal(&e))?;
        let action = match status {
            account_service::OrganisationStatus::Active => "organisation.resume",
            account_service::OrganisationStatus::Suspended => "organisation.suspend",
        };
        audit_organisation(state, &actor, action, &before, &after).await?;
        Ok(OrganisationResponse::Ok(Json(dto::OrganisationView::from(&after))))
    }

    async fn set_status(
        &self,
        state: &AppState,
        auth: &AdminToken,
        id: &str,
        header: Option<String>,
        status: TenantStatus,
    ) -> AdminResult<TenantResponse> {
        let actor = actor(state, auth).await?;
        let id = tenant_id(id)?;
        let expected = match header {
            Some(header) => {
                let current = state.registry.get_tenant(&actor, id).await?;
                Some(if_match(&header, || current.version)?)
            }
            None => None,
        };
        Ok(tenant_response(&state.registry.set_tenant_status(&actor, id, status, expected).await?))
    }
}

/// Writes an organisation's change to the audit log (status and verifications before and after:
/// no personal data of its people).
async fn audit_organisation(
    state: &AppState,
    actor: &Actor,
    action: &str,
    before: &account_service::Organisation,
    after: &account_service::Organisation,
) -> AdminResult<()> {
    let snapshot = |o: &account_service::Organisation| {
        serde_json::json!({
            "environment": o.environment.as_str(),
            "status": format!("{:?}", o.status).to_lowercase(),
            "verifications": o.verifications.iter().map(|v| serde_json::json!({
                "field": v.field.as_str(), "by": v.by, "evidence": v.evidence,
            })).collect::<Vec<_>>(),
        })
    };
    state
        .registry
        .record_action(actor, action, after.id.to_string(), Some(snapshot(before)), Some(snapshot(after)))
        .await?;
    Ok(())
}

/// The admin API as a poem-openapi service, mounted at `/admin/api/v1`.
pub(crate) fn service() -> OpenApiService<AdminApi, ()> {
    OpenApiService::new(AdminApi, "servicekonto admin API", env!("CARGO_PKG_VERSION"))
        .server("/admin/api/v1")
        .description("Tenants (authorities), their clients per environment, organisations (company accounts), and the audit log. RFC 9457 problem details on every error.")
}

/// Registers the admin API's paths and methods (from its OpenAPI document) for `Allow`.
pub(crate) fn add_methods(table: &mut crate::middleware::MethodTable) {
    let spec: serde_json::Value = serde_json::from_str(&openapi_json()).unwrap_or_default();
    for (path, operations) in spec["paths"].as_object().into_iter().flatten() {
        let pattern: String = path
            .split('/')
            .map(|segment| match segment.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                Some(name) => format!(":{name}"),
                None => segment.to_owned(),
            })
            .collect::<Vec<_>>()
            .join("/");
        let methods: Vec<String> =
            operations.as_object().into_iter().flatten().map(|(method, _)| method.to_ascii_uppercase()).collect();
        table.add(&format!("/admin/api/v1{pattern}"), &methods.join(", "));
    }
}

/// The OpenAPI document of the admin API (committed as `docs/admin-openapi.json`).
pub fn openapi_json() -> String {
    service().spec()
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_committed_openapi_document_matches_the_code() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/admin-openapi.json");
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            committed.trim_end() == super::openapi_json().trim_end(),
            "docs/admin-openapi.json is out of date: run `just openapi` (servicekonto admin openapi > docs/admin-openapi.json)"
        );
    }

    #[test]
    fn if_match_accepts_strong_weak_and_star() {
        assert_eq!(super::if_match("\"3\"", || 9).ok(), Some(3));
        assert_eq!(super::if_match("W/\"3\"", || 9).ok(), Some(3));
        assert_eq!(super::if_match("*", || 9).ok(), Some(9));
        assert!(super::if_match("\"abc\"", || 9).is_err());
    }
}
