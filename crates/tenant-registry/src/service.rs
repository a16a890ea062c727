//! The registry's use cases: what operators, tenant admins and the token endpoint may do.

use std::{collections::BTreeSet, sync::Arc, time::Duration};

use oidc_core::{ClaimName, ClientId, Clock, Environment, TenantId, TrustLevel};
use time::OffsetDateTime;

use crate::{
    audit::{Actor, AuditEntry, AuditEvent, AuditFilter, client_snapshot, tenant_snapshot},
    error::{ClientAuthError, RegistryError},
    model::{AdminRole, AuthMethod, Branding, Client, ClientKind, ClientSettings, Tenant, TenantStatus},
    rules::{self, Problems},
    secret::{ClientSecret, SecretHasher},
    store::{ClientFilter, Page, PageRequest, RegistryStore, StoreError, TenantFilter},
};

/// What a new tenant is made of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewTenant {
    /// Short name.
    pub slug: String,
    /// Full name.
    pub name: String,
    /// Contact.
    pub contact_email: String,
    /// Branding.
    pub branding: Branding,
    /// Claims it may receive.
    pub allowed_claims: BTreeSet<ClaimName>,
    /// Minimum trust level.
    pub min_trust_level: TrustLevel,
    /// Pairwise sector; the slug when `None`.
    pub sector: Option<String>,
}

/// The changeable fields of a tenant (status changes go through suspend/resume).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantChanges {
    /// Full name.
    pub name: String,
    /// Contact.
    pub contact_email: String,
    /// Branding.
    pub branding: Branding,
    /// Claims it may receive.
    pub allowed_claims: BTreeSet<ClaimName>,
    /// Minimum trust level.
    pub min_trust_level: TrustLevel,
}

/// What only operators may set on a client.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OperatorFlags {
    /// Skips consent.
    pub first_party: bool,
    /// Admin-API access.
    pub admin_role: Option<AdminRole>,
}

/// Everything a new client row is made from.
struct NewClient {
    tenant_id: TenantId,
    environment: Environment,
    client_id: ClientId,
    settings: ClientSettings,
    flags: OperatorFlags,
    chosen_secret: Option<ClientSecret>,
    /// Dynamic registration: also make a registration access token.
    registration: bool,
}

/// The longest overlap of old and new secret at a rotation.
pub const MAX_SECRET_OVERLAP: Duration = Duration::from_secs(30 * 24 * 3600);

/// Tenants, clients and their audit log.
pub struct Registry {
    store: Arc<dyn RegistryStore>,
    hasher: SecretHasher,
    clock: Arc<dyn Clock>,
}

/// An audit event of `actor` on `target` of `tenant_id`.
fn event(
    actor: &Actor,
    action: &str,
    tenant_id: TenantId,
    target: String,
    before: Option<serde_json::Value>,
    after: Option<serde_json::Value>,
    at: OffsetDateTime,
) -> AuditEvent {
    AuditEvent {
        at,
        actor: actor.label(),
        action: action.to_owned(),
        tenant_id: Some(tenant_id),
        target,
        before,
        after,
    }
}

/// Narrows a listing's tenant filter to what `actor` may see: a tenant admin sees only its own
/// tenant, so asking for another one finds nothing (`false`) rather than an error that would
/// confirm the tenant exists.
fn scope_to_actor(actor: &Actor, requested: &mut Option<TenantId>) -> bool {
    if let Actor::TenantAdmin { tenant_id, .. } = actor {
        if requested.is_some_and(|t| t != *tenant_id) {
            return false;
        }
        *requested = Some(*tenant_id);
    }
    true
}

fn invalid(problems: Problems) -> Result<(), RegistryError> {
    if problems.0.is_empty() { Ok(()) } else { Err(RegistryError::Invalid(problems.0)) }
}

/// A client's tenant, if it may act: a tenant that is gone fails like an unknown client.
fn active<T: std::borrow::Borrow<Tenant>>(tenant: Option<T>) -> Result<T, ClientAuthError> {
    match tenant {
        Some(tenant) if tenant.borrow().status == TenantStatus::Active => Ok(tenant),
        Some(_) => Err(ClientAuthError::TenantSuspended),
        None => Err(ClientAuthError::Failed),
    }
}

/// Whether the client gets secrets (confidential clients that authenticate with one).
fn uses_secret(settings: &ClientSettings) -> bool {
    matches!(settings.auth_method, AuthMethod::ClientSecretBasic | AuthMethod::ClientSecretPost)
}

impl Registry {
    /// A registry over `store`; client secrets are hashed with `hasher`.
    pub fn new(store: Arc<dyn RegistryStore>, hasher: SecretHasher, clock: Arc<dyn Clock>) -> Self {
        Self { store, hasher, clock }
    }

    fn require_operator(actor: &Actor) -> Result<(), RegistryError> {
        if actor.is_operator() { Ok(()) } else { Err(RegistryError::Forbidden("only operators may do this")) }
    }

    /// The tenant if the actor may see it; "not found" otherwise.
    async fn visible_tenant(&self, actor: &Actor, id: TenantId) -> Result<Tenant, RegistryError> {
        if !actor.sees(id) {
            return Err(RegistryError::NotFound);
        }
        self.store.find_tenant(id).await?.ok_or(RegistryError::NotFound)
    }

    /// The client if the actor may see and manage it; "not found" otherwise (a tenant admin
    /// does not learn that an operator client exists).
    async fn visible_client(&self, actor: &Actor, client_id: &ClientId) -> Result<Client, RegistryError> {
        match self.store.find_client(client_id).await? {
            Some(client) if actor.manages(&client) => Ok(client),
            _ => Err(RegistryError::NotFound),
        }
    }

    /// Refuses to take away the last operator client of production: without one, only the
    /// command line could administer the service again.
    async fn keep_an_operator(&self, client: &Client) -> Result<(), RegistryError> {
        if client.admin_role != Some(AdminRole::Operator) || client.environment != Environment::Production {
            return Ok(());
        }
        let filter = ClientFilter {
            environment: Some(Environment::Production),
            admin_role: Some(AdminRole::Operator),
            ..ClientFilter::default()
        };
        let operators = self.store.list_clients(&filter, PageRequest { limit: 1, offset: 0 }).await?.total;
        if operators <= 1 {
            return Err(RegistryError::Conflict(
                "this is the last operator client; create another operator client first".to_owned(),
            ));
        }
        Ok(())
    }

    /// Whether `tenant` holds an operator client (its suspension would end every operator token).
    async fn holds_operators(&self, tenant: TenantId) -> Result<bool, RegistryError> {
        let filter =
            ClientFilter { tenant_id: Some(tenant), admin_role: Some(AdminRole::Operator), ..ClientFilter::default() };
        Ok(self.store.list_clients(&filter, PageRequest { limit: 1, offset: 0 }).await?.total > 0)
    }

    /// The operator clients of production, for `admin bootstrap`.
    pub async fn operator_clients(&self) -> Result<Vec<Client>, RegistryError> {
        let filter = ClientFilter {
            environment: Some(Environment::Production),
            admin_role: Some(AdminRole::Operator),
            ..ClientFilter::default()
        };
        Ok(self.store.list_clients(&filter, PageRequest { limit: 500, offset: 0 }).await?.items)
    }

    // --- tenants ---------------------------------------------------------------------------

    /// Creates a tenant (operators only).
    pub async fn create_tenant(&self, actor: &Actor, new: NewTenant) -> Result<Tenant, RegistryError> {
        Self::require_operator(actor)?;
        let now = self.clock.now();
        let tenant = Tenant {
            id: TenantId::new_random(),
            sector: new.sector.unwrap_or_else(|| new.slug.clone()),
            slug: new.slug,
            name: new.name,
            contact_email: new.contact_email,
            status: TenantStatus::Active,
            branding: new.branding,
            allowed_claims: new.allowed_claims,
            min_trust_level: new.min_trust_level,
            version: 1,
            created_at: now,
            updated_at: now,
        };
        invalid(rules::check_tenant(&tenant))?;
        let audit =
            event(actor, "tenant.create", tenant.id, tenant.id.to_string(), None, Some(tenant_snapshot(&tenant)), now);
        self.store.insert_tenant(&tenant, &audit).await.map_err(|e| match e {
            StoreError::Conflict(_) => RegistryError::Conflict(format!("the slug {:?} is taken", tenant.slug)),
            other => other.into(),
        })?;
        Ok(tenant)
    }

    /// One tenant.
    pub async fn get_tenant(&self, actor: &Actor, id: TenantId) -> Result<Tenant, RegistryError> {
        self.visible_tenant(actor, id).await
    }

    /// Tenants the actor may see.
    pub async fn list_tenants(
        &self,
        actor: &Actor,
        mut filter: TenantFilter,
        page: PageRequest,
    ) -> Result<Page<Tenant>, RegistryError> {
        if let Actor::TenantAdmin { tenant_id, .. } = actor {
            filter.only = Some(*tenant_id);
        }
        Ok(self.store.list_tenants(&filter, page).await?)
    }

    /// Changes a tenant's fields (operators only) if it is still at `expected_version`. Its
    /// clients must still fit the new allowed claims and minimum trust level.
    pub async fn update_tenant(
        &self,
        actor: &Actor,
        id: TenantId,
        expected_version: i64,
        changes: TenantChanges,
    ) -> Result<Tenant, RegistryError> {
        Self::require_operator(actor)?;
        let before = self.visible_tenant(actor, id).await?;
        if before.version != expected_version {
            return Err(RegistryError::VersionMismatch { current: before.version });
        }
        let now = self.clock.now();
        let after = Tenant {
            name: changes.name,
            contact_email: changes.contact_email,
            branding: changes.branding,
            allowed_claims: changes.allowed_claims,
            min_trust_level: changes.min_trust_level,
            version: before.version + 1,
            updated_at: now,
            ..before.clone()
        };
        let mut problems = rules::check_tenant(&after);
        let clients = self
            .store
            .list_clients(
                &ClientFilter { tenant_id: Some(id), ..ClientFilter::default() },
                PageRequest { limit: 500, offset: 0 },
            )
            .await?;
        for client in &clients.items {
            for problem in rules::check_client(&client.settings, client.environment, &after).0 {
                if problem.field.starts_with("claims") || problem.field == "min_acr" {
                    problems.add(
                        "allowed_claims",
                        format!("client {} would break: {}: {}", client.client_id, problem.field, problem.message),
                    );
                }
            }
        }
        invalid(problems)?;
        let audit = event(
            actor,
            "tenant.update",
            id,
            id.to_string(),
            Some(tenant_snapshot(&before)),
            Some(tenant_snapshot(&after)),
            now,
        );
        self.store.update_tenant(&after, expected_version, &audit).await?;
        Ok(after)
    }

    /// Suspends or resumes a tenant (operators only). Suspension stops token issuance for all
    /// its clients at once.
    pub async fn set_tenant_status(
        &self,
        actor: &Actor,
        id: TenantId,
        status: TenantStatus,
        expected_version: Option<i64>,
    ) -> Result<Tenant, RegistryError> {
        Self::require_operator(actor)?;
        let before = self.visible_tenant(actor, id).await?;
        if status == TenantStatus::Suspended && self.holds_operators(id).await? {
            return Err(RegistryError::Conflict(
                "this tenant holds operator clients; suspending it would lock every operator out".to_owned(),
            ));
        }
        let expected = expected_version.unwrap_or(before.version);
        if before.version != expected {
            return Err(RegistryError::VersionMismatch { current: before.version });
        }
        let now = self.clock.now();
        let after = Tenant { status, version: before.version + 1, updated_at: now, ..before.clone() };
        let action = match status {
            TenantStatus::Active => "tenant.resume",
            TenantStatus::Suspended => "tenant.suspend",
        };
        let audit = event(
            actor,
            action,
            id,
            id.to_string(),
            Some(tenant_snapshot(&before)),
            Some(tenant_snapshot(&after)),
            now,
        );
        self.store.update_tenant(&after, expected, &audit).await?;
        Ok(after)
    }

    /// Deletes a tenant without clients (operators only).
    pub async fn delete_tenant(
        &self,
        actor: &Actor,
        id: TenantId,
        expected_version: Option<i64>,
    ) -> Result<(), RegistryError> {
        Self::require_operator(actor)?;
        let before = self.visible_tenant(actor, id).await?;
        let expected = expected_version.unwrap_or(before.version);
        let audit =
            event(actor, "tenant.delete", id, id.to_string(), Some(tenant_snapshot(&before)), None, self.clock.now());
        Ok(self.store.delete_tenant(id, expected, &audit).await?)
    }

    // --- clients ---------------------------------------------------------------------------

    fn check_flags(actor: &Actor, flags: OperatorFlags, current: OperatorFlags) -> Result<(), RegistryError> {
        if flags != current && !actor.is_operator() {
            return Err(RegistryError::Forbidden("only operators may set first_party or admin_role"));
        }
        Ok(())
    }

    fn check_admin_role(settings: &ClientSettings, flags: OperatorFlags, problems: &mut Problems) {
        if flags.admin_role.is_some() && settings.kind != ClientKind::Confidential {
            problems.add("admin_role", "admin clients must be confidential");
        }
    }

    /// Creates a client of `tenant_id` in `environment`. Returns the secret once for clients
    /// that authenticate with one.
    pub async fn create_client(
        &self,
        actor: &Actor,
        tenant_id: TenantId,
        environment: Environment,
        settings: ClientSettings,
        flags: OperatorFlags,
    ) -> Result<(Client, Option<ClientSecret>), RegistryError> {
        self.create_client_with_id(actor, tenant_id, environment, ClientId::generate(), settings, flags, None).await
    }

    /// As [`Registry::create_client`] with a chosen id and, optionally, a chosen secret; for the
    /// command line and the demo data.
    #[allow(clippy::too_many_arguments)]
    pub async fn create_client_with_id(
        &self,
        actor: &Actor,
        tenant_id: TenantId,
        environment: Environment,
        client_id: ClientId,
        settings: ClientSettings,
        flags: OperatorFlags,
        chosen_secret: Option<ClientSecret>,
    ) -> Result<(Client, Option<ClientSecret>), RegistryError> {
        let new = NewClient { tenant_id, environment, client_id, settings, flags, chosen_secret, registration: false };
        let (client, secret, _) = self.insert_client(actor, new).await?;
        Ok((client, secret))
    }

    /// RFC 7591: registers a client for the tenant an initial access token was issued to.
    /// Returns the client, its secret (if it uses one) and its registration access token.
    pub async fn register_client(
        &self,
        tenant_id: TenantId,
        environment: Environment,
        settings: ClientSettings,
    ) -> Result<(Client, Option<ClientSecret>, ClientSecret), RegistryError> {
        let new = NewClient {
            tenant_id,
            environment,
            client_id: ClientId::generate(),
            settings,
            flags: OperatorFlags::default(),
            chosen_secret: None,
            registration: true,
        };
        let (client, secret, token) = self.insert_client(&Actor::Registration { tenant_id }, new).await?;
        let token = token.ok_or_else(|| RegistryError::Conflict("no registration token was made".into()))?;
        Ok((client, secret, token))
    }

    /// RFC 7592: the dynamically registered client of `environment` that `registration_token`
    /// belongs to. Anything else, including a wrong token, is "not found".
    pub async fn registered_client(
        &self,
        environment: Environment,
        client_id: &str,
        registration_token: &str,
    ) -> Result<Client, RegistryError> {
        let client_id = ClientId::parse(client_id).ok_or(RegistryError::NotFound)?;
        let client = self.store.find_client(&client_id).await?.ok_or(RegistryError::NotFound)?;
        let stored = client.registration_token.clone().ok_or(RegistryError::NotFound)?;
        let hash = crate::model::SecretHash { hash: stored, created_at: 0, expires_at: None };
        let now = self.clock.now().unix_timestamp();
        if client.environment != environment || !self.hasher.verify(&[hash], registration_token, now) {
            return Err(RegistryError::NotFound);
        }
        Ok(client)
    }

    async fn insert_client(
        &self,
        actor: &Actor,
        new: NewClient,
    ) -> Result<(Client, Option<ClientSecret>, Option<ClientSecret>), RegistryError> {
        let tenant = self.visible_tenant(actor, new.tenant_id).await?;
        Self::check_flags(actor, new.flags, OperatorFlags::default())?;
        let mut problems = rules::check_client(&new.settings, new.environment, &tenant);
        Self::check_admin_role(&new.settings, new.flags, &mut problems);
        invalid(problems)?;
        let now = self.clock.now();
        let now_unix = now.unix_timestamp();
        let (secret, secrets) = if uses_secret(&new.settings) {
            let (secret, hash) = match new.chosen_secret {
                Some(secret) => {
                    let hash = self.hasher.hash(&secret, now_unix);
                    (secret, hash)
                }
                None => self.hasher.generate(now_unix),
            };
            (Some(secret), vec![hash])
        } else {
            (None, Vec::new())
        };
        let (registration_token, registration_hash) = if new.registration {
            let (token, hash) = self.hasher.generate(now_unix);
            (Some(token), Some(hash.hash))
        } else {
            (None, None)
        };
        let client = Client {
            client_id: new.client_id,
            tenant_id: new.tenant_id,
            environment: new.environment,
            settings: new.settings,
            first_party: new.flags.first_party,
            admin_role: new.flags.admin_role,
            secrets,
            registration_token: registration_hash,
            version: 1,
            created_at: now,
            updated_at: now,
        };
        let audit = event(
            actor,
            "client.create",
            new.tenant_id,
            client.client_id.to_string(),
            None,
            Some(client_snapshot(&client)),
            now,
        );
        self.store.insert_client(&client, &audit).await?;
        Ok((client, secret, registration_token))
    }

    /// One client.
    pub async fn get_client(&self, actor: &Actor, client_id: &ClientId) -> Result<Client, RegistryError> {
        self.visible_client(actor, client_id).await
    }

    /// Clients the actor may see.
    pub async fn list_clients(
        &self,
        actor: &Actor,
        mut filter: ClientFilter,
        page: PageRequest,
    ) -> Result<Page<Client>, RegistryError> {
        if !scope_to_actor(actor, &mut filter.tenant_id) {
            return Ok(Page { items: Vec::new(), total: 0 });
        }
        filter.hide_operators = !actor.is_operator();
        Ok(self.store.list_clients(&filter, page).await?)
    }

    /// Replaces a client's settings if it is still at `expected_version`.
    pub async fn update_client(
        &self,
        actor: &Actor,
        client_id: &ClientId,
        expected_version: i64,
        settings: ClientSettings,
        flags: OperatorFlags,
    ) -> Result<Client, RegistryError> {
        let before = self.visible_client(actor, client_id).await?;
        if before.version != expected_version {
            return Err(RegistryError::VersionMismatch { current: before.version });
        }
        Self::check_flags(
            actor,
            flags,
            OperatorFlags { first_party: before.first_party, admin_role: before.admin_role },
        )?;
        if flags.admin_role != before.admin_role {
            self.keep_an_operator(&before).await?;
        }
        let tenant = self.visible_tenant(actor, before.tenant_id).await?;
        let mut problems = rules::check_client(&settings, before.environment, &tenant);
        Self::check_admin_role(&settings, flags, &mut problems);
        if uses_secret(&settings) && before.secrets.is_empty() {
            problems
                .add("auth_method", "this client has no secret; create a new client for secret-based authentication");
        }
        invalid(problems)?;
        let now = self.clock.now();
        let after = Client {
            settings,
            first_party: flags.first_party,
            admin_role: flags.admin_role,
            version: before.version + 1,
            updated_at: now,
            ..before.clone()
        };
        let audit = event(
            actor,
            "client.update",
            before.tenant_id,
            client_id.to_string(),
            Some(client_snapshot(&before)),
            Some(client_snapshot(&after)),
            now,
        );
        self.store.update_client(&after, expected_version, &audit).await?;
        Ok(after)
    }

    /// A new secret; the old ones keep working for `overlap` (at most [`MAX_SECRET_OVERLAP`]).
    pub async fn rotate_secret(
        &self,
        actor: &Actor,
        client_id: &ClientId,
        overlap: Duration,
        expected_version: Option<i64>,
    ) -> Result<(Client, ClientSecret), RegistryError> {
        let before = self.visible_client(actor, client_id).await?;
        let expected = expected_version.unwrap_or(before.version);
        if before.version != expected {
            return Err(RegistryError::VersionMismatch { current: before.version });
        }
        if !uses_secret(&before.settings) {
            return Err(RegistryError::Invalid(vec![rules::FieldError {
                field: "auth_method".into(),
                message: "this client authenticates without a secret".into(),
            }]));
        }
        if overlap > MAX_SECRET_OVERLAP {
            return Err(RegistryError::Invalid(vec![rules::FieldError {
                field: "overlap_seconds".into(),
                message: format!("at most {} seconds", MAX_SECRET_OVERLAP.as_secs()),
            }]));
        }
        let now = self.clock.now();
        let now_unix = now.unix_timestamp();
        let until = now_unix + i64::try_from(overlap.as_secs()).unwrap_or(i64::MAX);
        let (secret, hash) = self.hasher.generate(now_unix);
        let mut secrets: Vec<_> = before
            .secrets
            .iter()
            .filter(|s| s.expires_at.is_none_or(|e| e > now_unix))
            .cloned()
            .map(|mut s| {
                s.expires_at = Some(s.expires_at.map_or(until, |e| e.min(until)));
                s
            })
            .filter(|s| s.expires_at.is_some_and(|e| e > now_unix))
            .collect();
        secrets.push(hash);
        let after = Client { secrets, version: before.version + 1, updated_at: now, ..before.clone() };
        let audit = event(
            actor,
            "client.rotate_secret",
            before.tenant_id,
            client_id.to_string(),
            Some(client_snapshot(&before)),
            Some(client_snapshot(&after)),
            now,
        );
        self.store.update_client(&after, expected, &audit).await?;
        Ok((after, secret))
    }

    /// Deletes a client.
    pub async fn delete_client(
        &self,
        actor: &Actor,
        client_id: &ClientId,
        expected_version: Option<i64>,
    ) -> Result<(), RegistryError> {
        let before = self.visible_client(actor, client_id).await?;
        self.keep_an_operator(&before).await?;
        let expected = expected_version.unwrap_or(before.version);
        let audit = event(
            actor,
            "client.delete",
            before.tenant_id,
            client_id.to_string(),
            Some(client_snapshot(&before)),
            None,
            self.clock.now(),
        );
        Ok(self.store.delete_client(client_id, expected, &audit).await?)
    }

    /// Copies a test client's configuration to a new production client with new credentials,
    /// checked against production rules; every refusal is listed.
    pub async fn promote_client(
        &self,
        actor: &Actor,
        client_id: &ClientId,
    ) -> Result<(Client, Option<ClientSecret>), RegistryError> {
        let source = self.visible_client(actor, client_id).await?;
        if source.environment != Environment::Test {
            return Err(RegistryError::Invalid(vec![rules::FieldError {
                field: "environment".into(),
                message: "only clients of the test environment can be promoted".into(),
            }]));
        }
        let flags = OperatorFlags { first_party: source.first_party, admin_role: source.admin_role };
        // Promotion keeps operator flags only when an operator promotes.
        let flags = if actor.is_operator() { flags } else { OperatorFlags::default() };
        let (client, secret) = self
            .create_client(actor, source.tenant_id, Environment::Production, source.settings.clone(), flags)
            .await?;
        Ok((client, secret))
    }

    // --- audit -----------------------------------------------------------------------------

    /// Audit entries the actor may see, newest first.
    pub async fn audit_log(
        &self,
        actor: &Actor,
        mut filter: AuditFilter,
        page: PageRequest,
    ) -> Result<Page<AuditEntry>, RegistryError> {
        if !scope_to_actor(actor, &mut filter.tenant_id) {
            return Ok(Page { items: Vec::new(), total: 0 });
        }
        Ok(self.store.list_audit(&filter, page).await?)
    }

    // --- token endpoint --------------------------------------------------------------------

    /// Authenticates a client of `environment` by its secret with `method`; its tenant must be
    /// active. Every mismatch looks the same to the caller, and only an authenticated client
    /// learns that its tenant is suspended.
    pub async fn authenticate_client(
        &self,
        environment: Environment,
        client_id: &str,
        secret: &str,
        method: AuthMethod,
    ) -> Result<(Arc<Client>, Arc<Tenant>), ClientAuthError> {
        let (client, tenant) = self.client_in(environment, client_id).await?;
        if client.settings.auth_method != method
            || !self.hasher.verify(&client.secrets, secret, self.clock.now().unix_timestamp())
        {
            return Err(ClientAuthError::Failed);
        }
        Ok((client, active(tenant)?))
    }

    /// Records that `actor` issued an initial access token for dynamic registration in the
    /// tenant's `environment` (the token itself is never recorded).
    pub async fn record_initial_access_token(
        &self,
        actor: &Actor,
        tenant_id: TenantId,
        environment: Environment,
        expires_at: OffsetDateTime,
    ) -> Result<(), RegistryError> {
        let after =
            serde_json::json!({ "environment": environment.as_str(), "expires_at": expires_at.unix_timestamp() });
        let audit = event(
            actor,
            "initial_access_token.issue",
            tenant_id,
            tenant_id.to_string(),
            None,
            Some(after),
            self.clock.now(),
        );
        Ok(self.store.append_audit(&audit).await?)
    }

    /// Records an admin action on an object of another domain (an organisation) in the audit
    /// log, under the actor's tenant for a tenant admin.
    pub async fn record_action(
        &self,
        actor: &Actor,
        action: &str,
        target: String,
        before: Option<serde_json::Value>,
        after: Option<serde_json::Value>,
    ) -> Result<(), RegistryError> {
        let tenant_id = match actor {
            Actor::TenantAdmin { tenant_id, .. } | Actor::Registration { tenant_id } => Some(*tenant_id),
            Actor::Operator(_) | Actor::System(_) => None,
        };
        let audit = AuditEvent {
            at: self.clock.now(),
            actor: actor.label(),
            action: action.to_owned(),
            tenant_id,
            target,
            before,
            after,
        };
        Ok(self.store.append_audit(&audit).await?)
    }

    /// The client `client_id` of `environment` and its active tenant, for the authorization
    /// endpoint and public clients at the token endpoint; `Failed` when unknown here.
    pub async fn active_client(
        &self,
        environment: Environment,
        client_id: &str,
    ) -> Result<(Arc<Client>, Arc<Tenant>), ClientAuthError> {
        let (client, tenant) = self.client_in(environment, client_id).await?;
        Ok((client, active(tenant)?))
    }

    /// The SAML service provider `entity_id` of `environment` and its active tenant, for the SSO
    /// and logout endpoints; `Failed` when unknown here.
    pub async fn active_saml_client(
        &self,
        environment: Environment,
        entity_id: &str,
    ) -> Result<(Client, Tenant), ClientAuthError> {
        let client = self.store.find_saml_client(environment, entity_id).await.map_err(ClientAuthError::Store)?;
        let client = client.ok_or(ClientAuthError::Failed)?;
        let tenant = self.active_tenant_of(&client).await?;
        Ok((client, tenant))
    }

    /// The client `client_id` of `environment` with its tenant, if it still exists.
    async fn client_in(
        &self,
        environment: Environment,
        client_id: &str,
    ) -> Result<(Arc<Client>, Option<Arc<Tenant>>), ClientAuthError> {
        let Some(client_id) = ClientId::parse(client_id) else { return Err(ClientAuthError::Failed) };
        let found = self.store.find_client_and_tenant(&client_id).await.map_err(ClientAuthError::Store)?;
        found.filter(|(client, _)| client.environment == environment).ok_or(ClientAuthError::Failed)
    }

    async fn active_tenant_of(&self, client: &Client) -> Result<Tenant, ClientAuthError> {
        active(self.store.find_tenant(client.tenant_id).await.map_err(ClientAuthError::Store)?)
    }

    /// The tenant with `slug`, for the command line.
    pub async fn find_tenant_by_slug(&self, slug: &str) -> Result<Option<Tenant>, RegistryError> {
        let page = self
            .store
            .list_tenants(
                &TenantFilter { search: Some(slug.to_owned()), ..TenantFilter::default() },
                PageRequest { limit: 500, offset: 0 },
            )
            .await?;
        Ok(page.items.into_iter().find(|t| t.slug == slug))
    }
}
