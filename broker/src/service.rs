//! One broker request end to end for every frontend (plain, json, UCCS, SSH mode): checks, authentication, the task (§3.5, §4, §12); domain replies, no wire format.

use crate::acl::{self, AclVerdict, ProfileAcls};
use crate::admin::metrics::{MechLabel, OutcomeLabel};
use crate::admin::{AuditEvent, Operations};
use crate::auth::cookies::{self, AccessPolicy, CookieStore};
use crate::auth::throttle::{LoginThrottle, ThrottleConfig};
use crate::auth::{self, AuthEnvironment, Mechanism, Verdict};
use crate::config::{Backend, BrokerConfig, ConfigError, ProfileSettings, StartupSettings, Value};
use crate::farm::FarmHandle;
use crate::nss;
use crate::profiles::{self, BuiltProfile, HostStatus, ListedProfile, ListingFlavour, ProfileSet};
use crate::reply::{BrokerReply, RemoteDesktop, Selection, TaskOutcome, UccsReply};
use crate::select::{self, RealWorld};
use crate::store::{ConfigStore, Snapshot};
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use tokio::time::Instant;

/// Which client protocol a request came through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Frontend {
    Plain,
    Json,
    /// The SSH broker mode (§12): no output switch, password check forced to succeed.
    Ssh,
}

/// The request values of §3.4, already decoded and stripped.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BrokerRequest {
    pub user: String,
    pub password: String,
    pub login: String,
    pub authid: String,
    pub task: String,
    pub profile_id: String,
    pub pubkey: String,
}

/// HTTP Basic credentials as the UCCS client sent them (split at the first `:`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BasicCredentials {
    pub user: String,
    pub password: String,
}

/// A UCCS caller after authentication (§4), with the config version that admitted it.
pub struct UccsCaller {
    snapshot: Arc<Snapshot>,
    config: Arc<BrokerConfig>,
    /// The authenticated user (`anonymous` when no credential is required).
    user: String,
}

/// What goes wrong with a request; each maps once to an HTTP status.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum BrokerError {
    #[error("not found")]
    NotFound,
    #[error("unauthorized")]
    Unauthorized,
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<ConfigError> for BrokerError {
    fn from(error: ConfigError) -> BrokerError {
        BrokerError::Internal(error.to_string())
    }
}

impl From<profiles::ProfileError> for BrokerError {
    fn from(error: profiles::ProfileError) -> BrokerError {
        BrokerError::Internal(error.to_string())
    }
}

/// The per-request settings of the ACL check (§6.3), looked up once for all profiles.
struct AclCheck {
    name_service: Box<dyn nss::NameService>,
    ignore_primary_group_memberships: bool,
}

impl AclCheck {
    fn new(config: &BrokerConfig, backend: Backend) -> Result<AclCheck, BrokerError> {
        let group_db = &config.backend(backend).group_db;
        let name_service = nss::name_service(group_db)
            .ok_or_else(|| BrokerError::Internal(format!("unknown group-db {group_db:?}")))?;
        Ok(AclCheck {
            name_service,
            ignore_primary_group_memberships: config
                .global
                .ignore_primary_group_memberships
                .get()?,
        })
    }

    fn verdict(&self, acls: &ProfileAcls, user: &str, client_ip: &IpAddr) -> AclVerdict {
        acl::acl_verdict(
            user,
            *client_ip,
            acls,
            self.name_service.as_ref(),
            self.ignore_primary_group_memberships,
        )
    }
}

/// The default auth-service socket (fix B20: never the doubled path).
pub use crate::config::keys::DEFAULT_AUTHSERVICE_SOCKET;

/// The broker: its config files and start-up settings. Shared by every request.
pub struct Broker {
    pub store: ConfigStore,
    pub settings: StartupSettings,
    /// Failed-login counters (`login-throttling`).
    throttle: std::sync::Mutex<LoginThrottle>,
    /// The live farm state (`[farm]` in x2gobroker.conf), when configured.
    pub farm: Option<FarmHandle>,
    /// Metrics, the audit log, the drain state.
    pub operations: Arc<Operations>,
    /// The cluster of brokers sharing one PostgreSQL (`[cluster]`), set once at start-up.
    pub cluster: std::sync::OnceLock<Arc<crate::cluster::Cluster>>,
}

impl Broker {
    /// A broker over `store`.
    pub fn new(store: ConfigStore, settings: StartupSettings) -> Arc<Broker> {
        Broker::with_farm(store, settings, None)
    }

    /// A broker over `store` that asks the live `farm` for agent-driven profiles.
    pub fn with_farm(
        store: ConfigStore,
        settings: StartupSettings,
        farm: Option<FarmHandle>,
    ) -> Arc<Broker> {
        Broker::assemble(store, settings, farm, Arc::new(Operations::in_memory()))
    }

    /// A broker with its farm and its operations side (metrics, audit log, drain state; the
    /// farm is told the drained servers now).
    pub fn assemble(
        store: ConfigStore,
        settings: StartupSettings,
        farm: Option<FarmHandle>,
        operations: Arc<Operations>,
    ) -> Arc<Broker> {
        if let Some(farm) = &farm {
            farm.set_drained(operations.drain.drained());
        }
        Arc::new(Broker {
            farm,
            store,
            settings,
            throttle: std::sync::Mutex::new(LoginThrottle::new(ThrottleConfig::default())),
            operations,
            cluster: std::sync::OnceLock::new(),
        })
    }

    fn throttle(&self) -> std::sync::MutexGuard<'_, LoginThrottle> {
        self.throttle
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Checks a password with the backend's mechanism (no cookies: also for UCCS Basic auth),
    /// refusing at once (without asking the mechanism) while the user or the client address is
    /// throttled after failed logins.
    pub async fn verify_password(
        &self,
        config: &BrokerConfig,
        backend: Backend,
        user: &str,
        password: &str,
        client_ip: &IpAddr,
    ) -> Result<bool, BrokerError> {
        let throttling = config.global.login_throttling.get()?;
        if throttling {
            if let Err(retry_after) =
                self.throttle()
                    .begin_attempt(user, *client_ip, Instant::now())
            {
                tracing::warn!(user, client = %client_ip, retry_after_seconds = retry_after.as_secs(),
                    "login refused: too many failed attempts");
                self.operations.metrics.auth_failure(MechLabel::Throttled);
                self.operations.audit.record(&AuditEvent::Login {
                    user,
                    client: *client_ip,
                    mechanism: &config.backend(backend).auth_mech,
                    result: "throttled",
                });
                return Ok(false);
            }
        }
        let environment = self.auth_environment(config);
        let mechanism = Mechanism::from_settings(
            &config.backend(backend).auth_mech,
            &config.https_get,
            environment.timeout,
        )?;
        let verdict = auth::authenticate(&mechanism, &environment, user, password).await;
        if throttling {
            let mut throttle = self.throttle();
            match verdict {
                Verdict::Granted => throttle.record_success(user, *client_ip),
                Verdict::Refused => throttle.record_failure(user, *client_ip, Instant::now()),
                // an outage is no failed login: the right password works once it is over
                Verdict::Unavailable => throttle.end_attempt(user, *client_ip),
            }
        }
        let result = match verdict {
            Verdict::Granted => "ok",
            Verdict::Refused => {
                tracing::info!(user, client = %client_ip, "login failed");
                self.operations
                    .metrics
                    .auth_failure(mechanism_label(&mechanism));
                "failed"
            }
            Verdict::Unavailable => {
                tracing::warn!(user, client = %client_ip, "login refused: the authentication mechanism could not be asked");
                self.operations
                    .metrics
                    .auth_failure(mechanism_label(&mechanism));
                "unavailable"
            }
        };
        self.operations.audit.record(&AuditEvent::Login {
            user,
            client: *client_ip,
            mechanism: &config.backend(backend).auth_mech,
            result,
        });
        Ok(verdict.granted())
    }

    /// The current config files.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.store.current()
    }

    /// The backend named in a URL capture or `--backend` (empty = the default backend).
    pub fn backend_for(&self, name: &str) -> Option<Backend> {
        let name = if name.is_empty() {
            self.settings.default_backend.as_str()
        } else {
            name
        };
        Backend::from_name(name)
    }

    fn auth_environment(&self, config: &BrokerConfig) -> AuthEnvironment {
        AuthEnvironment {
            authservice_socket: self.settings.authservice_socket(&config.global),
            timeout: self.settings.auth_timeout,
        }
    }

    /// The cookie directory: the environment override, else the `cookie-directory` key.
    pub fn cookie_directory(&self, config: &BrokerConfig) -> PathBuf {
        self.settings.cookie_directory(&config.global)
    }

    /// `check_access` (§6.2) with this broker's configuration.
    pub async fn check_access(
        &self,
        config: &BrokerConfig,
        backend: Backend,
        request: &BrokerRequest,
        client_ip: &IpAddr,
        password_already_verified: bool,
    ) -> Result<(bool, Option<String>), BrokerError> {
        let global = &config.global;
        let (require_password, require_cookie) = global.credential_requirements()?;
        if !require_password && !require_cookie {
            return Ok((true, None));
        }
        let preshared_cookie =
            cookies::preshared_cookie(&global.my_cookie_file, global.my_cookie.as_deref());
        let policy = AccessPolicy {
            require_password,
            require_cookie,
            use_static_cookie: global.use_static_cookie.get()?,
            auth_timeout_seconds: global.auth_timeout.get()?,
            verify_ip: global.verify_ip.get()?,
            preshared_cookie,
            max_cookies_per_user: usize::try_from(global.max_cookies_per_user.get()?)
                .unwrap_or(1)
                .max(1),
        };
        let store = CookieStore::new(self.cookie_directory(config));
        let mut password_error = None;
        let password_error_slot = &mut password_error;
        let password_check = move || async move {
            if password_already_verified {
                return true;
            }
            match self
                .verify_password(config, backend, &request.user, &request.password, client_ip)
                .await
            {
                Ok(granted) => granted,
                Err(error) => {
                    *password_error_slot = Some(error);
                    false
                }
            }
        };
        let now = std::time::SystemTime::now();
        let access = match self.cluster.get() {
            // in a cluster: a cookie issued by any broker, taken once by any
            Some(cluster) => {
                let shared = crate::cluster::SharedCookies {
                    cluster: cluster.clone(),
                    auth_timeout_seconds: policy.auth_timeout_seconds,
                    local: store,
                };
                let (user, authid) = (&request.user, &request.authid);
                cookies::check_access(
                    &policy,
                    &shared,
                    user,
                    client_ip,
                    authid,
                    now,
                    password_check,
                )
                .await
            }
            None => {
                let (user, authid) = (&request.user, &request.authid);
                cookies::check_access(
                    &policy,
                    &store,
                    user,
                    client_ip,
                    authid,
                    now,
                    password_check,
                )
                .await
            }
        };
        match (password_error, access) {
            (Some(error), _) => Err(error),
            // the login was granted but its cookie cannot be stored: fail it (500, as the
            // reference's exception) rather than hand out an AUTHID the next request refuses
            (None, Err(error)) => Err(BrokerError::Internal(format!("login refused: {error}"))),
            (None, Ok(access)) => Ok(access),
        }
    }

    /// Handles one plain/json/SSH-mode request (§3.5). `backend_name` is the URL capture.
    pub async fn process(
        &self,
        backend_name: &str,
        frontend: Frontend,
        mut request: BrokerRequest,
        client_ip: IpAddr,
    ) -> Result<BrokerReply, BrokerError> {
        let backend = self
            .backend_for(backend_name)
            .ok_or(BrokerError::NotFound)?;
        let snapshot = self.snapshot();
        let config = snapshot.config.clone().map_err(BrokerError::Internal)?;
        let output_enabled = match frontend {
            Frontend::Plain => Some(&config.global.enable_plain_output),
            Frontend::Json => Some(&config.global.enable_json_output),
            Frontend::Ssh => None,
        };
        if let Some(enabled) = output_enabled {
            if !enabled.get()? {
                return Err(BrokerError::NotFound);
            }
        }
        if backend == Backend::Base || !config.backend(backend).enable.get()? {
            return Err(BrokerError::NotFound);
        }
        if frontend == Frontend::Json && request.task == "listsessions" {
            request.task = "listprofiles".to_string();
        }
        let (access, next_cookie) = self
            .check_access(
                &config,
                backend,
                &request,
                &client_ip,
                frontend == Frontend::Ssh,
            )
            .await?;
        if !access {
            return Err(BrokerError::Unauthorized);
        }
        let listing_task = match frontend {
            Frontend::Json => "listprofiles",
            Frontend::Plain | Frontend::Ssh => "listsessions",
        };
        let outcome = match request.task.as_str() {
            "testcon" => TaskOutcome::Testcon,
            task if task == listing_task => {
                let mut listed = self
                    .list_profiles_async(
                        &snapshot,
                        &config,
                        backend,
                        &request.user,
                        &client_ip,
                        ListingFlavour::Broker,
                    )
                    .await?;
                if frontend == Frontend::Ssh {
                    // §12: the SSH mode lists an empty `user` as the login name.
                    for profile in listed.iter_mut() {
                        if matches!(profile.get("user"), Some(Value::Str(text)) if text.is_empty())
                        {
                            profile.set("user", Value::Str(request.login.clone()));
                        }
                    }
                }
                TaskOutcome::Listing(listed)
            }
            "selectsession" if request.profile_id.is_empty() => TaskOutcome::Selection(None),
            "selectsession" => TaskOutcome::Selection(Some(
                self.select_session(&snapshot, &config, backend, &request, &client_ip, frontend)
                    .await?,
            )),
            _ => TaskOutcome::None,
        };
        Ok(BrokerReply {
            task: request.task,
            next_cookie,
            outcome,
        })
    }

    /// Whether plain and json take GET requests (`allow-get-requests`; true while the config
    /// cannot be read, so that the request gets its 500 from `process`).
    pub fn allows_get_requests(&self) -> bool {
        match &self.snapshot().config {
            Ok(config) => config.global.allow_get_requests.get().unwrap_or(true),
            Err(_) => true,
        }
    }

    /// UCCS authentication (§4), before the method is looked at: `anonymous` when no credential
    /// is required (any credentials ignored), else HTTP Basic checked by the `base` backend's
    /// mechanism, retried with the part of the user name before the first `@`. No cookies.
    pub async fn uccs_authenticate(
        &self,
        credentials: Option<BasicCredentials>,
        client_ip: &IpAddr,
    ) -> Result<UccsCaller, BrokerError> {
        let snapshot = self.snapshot();
        let config = snapshot.config.clone().map_err(BrokerError::Internal)?;
        let (require_password, require_cookie) = config.global.credential_requirements()?;
        if !require_password && !require_cookie {
            return Ok(UccsCaller {
                snapshot,
                config,
                user: "anonymous".to_string(),
            });
        }
        let Some(BasicCredentials { user, password }) = credentials else {
            return Err(BrokerError::Unauthorized);
        };
        let mut candidates = vec![user.as_str()];
        if let Some((short, _)) = user.split_once('@') {
            candidates.push(short);
        }
        for candidate in candidates {
            if self
                .verify_password(&config, Backend::Base, candidate, &password, client_ip)
                .await?
            {
                return Ok(UccsCaller {
                    snapshot,
                    config,
                    user: candidate.to_string(),
                });
            }
        }
        Err(BrokerError::Unauthorized)
    }

    /// The UCCS server list (§4) for an authenticated caller; `backend_name` is the URL's
    /// (decoded) capture, `api_version` its digit.
    pub async fn uccs_servers(
        &self,
        caller: &UccsCaller,
        backend_name: &str,
        api_version: u32,
        client_ip: &IpAddr,
    ) -> Result<UccsReply, BrokerError> {
        let config = &caller.config;
        if !config.global.enable_uccs_output.get()? {
            return Err(BrokerError::NotFound);
        }
        let backend = self
            .backend_for(backend_name)
            .ok_or(BrokerError::NotFound)?;
        if backend == Backend::Base || !config.backend(backend).enable.get()? {
            return Err(BrokerError::NotFound);
        }
        let profiles = self
            .list_profiles_async(
                &caller.snapshot,
                config,
                backend,
                &caller.user,
                client_ip,
                ListingFlavour::Uccs,
            )
            .await?;
        let url_base = config.global.my_uccs_url_base.clone();
        let mut pick = |hosts: &[String]| {
            use rand::seq::IndexedRandom;
            hosts.choose(&mut rand::rng()).cloned()
        };
        let servers = profiles
            .iter()
            .map(|profile| uccs_server(profile, &caller.user, &mut pick))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(UccsReply {
            url_base,
            backend_in_url: backend_name.to_string(),
            api_version,
            servers,
        })
    }

    fn profile_set(snapshot: &Snapshot) -> Result<&ProfileSet, BrokerError> {
        snapshot.profile_set().map_err(BrokerError::Internal)
    }

    /// How the live farm drives a profile, `None` when it does not (no farm, or the profile's
    /// mode is not one the farm serves: [`crate::config::effective_agent_mode`]).
    fn farm_plan(&self, built: &BuiltProfile) -> Option<crate::farm::AgentPlan> {
        let farm = self.farm.as_ref()?;
        let mode = crate::config::effective_agent_mode(
            built.settings.agent_query_mode,
            built.settings.shadow,
            Some(&farm.runtime().config),
        )?;
        Some(crate::farm::AgentPlan {
            mode,
            host_key_policy: built.settings.agent_hostkey_policy.clone(),
        })
    }

    /// Supervises every server of the current profiles that the farm drives, and stops the
    /// supervisors of servers no profile names any more. Answers how many are supervised.
    pub fn supervise_all(&self) -> usize {
        let Some(farm) = &self.farm else {
            return 0;
        };
        let snapshot = self.snapshot();
        let Ok(set) = snapshot.profile_set() else {
            return 0;
        };
        let mut wanted = std::collections::HashSet::new();
        for built in set.iter().flatten() {
            if let Some(plan) = self.farm_plan(built) {
                farm.supervise(built, &plan);
                wanted.extend(built.hosts.iter().cloned());
            }
        }
        let removed = farm.retain_servers(&wanted);
        if removed > 0 {
            tracing::info!(
                removed,
                "farm: servers no profile names any more are no longer supervised"
            );
        }
        wanted.len()
    }

    /// A reload (SIGHUP): the config files as they are now, `[farm]` applied to the running
    /// farm (unless it has problems: then the running farm is kept), every server of the
    /// profiles supervised, the ones gone stopped.
    pub fn reload(&self) {
        let snapshot = self.store.current();
        let config = match &snapshot.config {
            Ok(config) => config.clone(),
            Err(error) => {
                tracing::error!(%error, "reload: the configuration cannot be loaded; the last good version keeps serving");
                return;
            }
        };
        if let Some(farm) = &self.farm {
            if config.farm.problems.is_empty() {
                let farm_config = config.farm.farm_config(&self.settings.farm_defaults());
                match farm.reload(farm_config) {
                    Ok(reloaded) => {
                        tracing::info!(restarted = reloaded.restarted, "reload: [farm] applied")
                    }
                    Err(error) => {
                        tracing::error!(%error, "reload: [farm] not applied, the running farm is kept")
                    }
                }
            } else {
                for problem in &config.farm.problems {
                    tracing::error!("reload: {}: {problem}", self.settings.config_file.display());
                }
                tracing::error!("reload: [farm] has problems: the running farm is kept");
            }
        }
        let supervised = self.supervise_all();
        tracing::info!(servers = supervised, "reload done");
    }

    /// The profiles `user` may see, transformed for listing and sorted by id (§7.4, §8), with
    /// the live farm's host narrowing and S/R status for farm-driven profiles (no agent call:
    /// answered from live state).
    pub async fn list_profiles_async(
        &self,
        snapshot: &Snapshot,
        config: &BrokerConfig,
        backend: Backend,
        user: &str,
        client_ip: &IpAddr,
        flavour: ListingFlavour,
    ) -> Result<Vec<ListedProfile>, BrokerError> {
        if backend == Backend::Zeroconf || self.farm.is_none() {
            return self.list_profiles(snapshot, config, backend, user, client_ip, flavour);
        }
        let mut listed = Vec::new();
        for (built, autologin) in
            self.visible_profiles(snapshot, config, backend, user, client_ip)?
        {
            let mut host_status = HostStatus::Unknown;
            if let (Some(farm), Some(plan)) = (&self.farm, self.farm_plan(&built)) {
                if let Some((host, status)) = farm.listing_status(&built, &plan, user).await {
                    host_status = HostStatus::Narrowed {
                        host,
                        status: status.map(crate::farm::model::SessionStatus::letter),
                    };
                }
            }
            listed.push(profiles::listing_profile(
                &built,
                user,
                flavour,
                autologin,
                &host_status,
            ));
        }
        Ok(listed)
    }

    /// The inifile profiles `user` may see from `client_ip`, sorted by id, with their
    /// autologin switch.
    fn visible_profiles(
        &self,
        snapshot: &Snapshot,
        config: &BrokerConfig,
        backend: Backend,
        user: &str,
        client_ip: &IpAddr,
    ) -> Result<Vec<(Arc<BuiltProfile>, bool)>, BrokerError> {
        let acl_check = AclCheck::new(config, backend)?;
        let mut visible = Vec::new();
        for built in Self::profile_set(snapshot)?.iter() {
            let built = built.as_ref().map_err(|error| error.clone())?;
            let verdict = acl_check.verdict(&built.acls, user, client_ip);
            if !verdict.granted() {
                if self.settings.debug {
                    tracing::debug!(user, client = %client_ip, profile = %built.profile.id, reason = verdict.reason(), "profile hidden by its ACLs");
                }
                continue;
            }
            let autologin = built.settings.session_autologin.get()?;
            visible.push((built.clone(), autologin));
        }
        Ok(visible)
    }

    /// The profiles `user` may see, transformed for listing and sorted by id (§7.4, §8).
    pub fn list_profiles(
        &self,
        snapshot: &Snapshot,
        config: &BrokerConfig,
        backend: Backend,
        user: &str,
        client_ip: &IpAddr,
        flavour: ListingFlavour,
    ) -> Result<Vec<ListedProfile>, BrokerError> {
        if backend == Backend::Zeroconf {
            if flavour == ListingFlavour::Uccs {
                return Ok(Vec::new());
            }
            let shell = &config.backend(backend).desktop_shell;
            let profile = profiles::zeroconf_profile(&uuid::Uuid::new_v4().to_string(), shell);
            let settings = ProfileSettings::resolve(config, backend, &profile);
            return Ok(vec![profiles::listing_profile(
                &Arc::new(BuiltProfile::new(profile, settings)),
                user,
                flavour,
                false,
                &HostStatus::Unknown,
            )]);
        }
        Ok(self
            .visible_profiles(snapshot, config, backend, user, client_ip)?
            .into_iter()
            .map(|(built, autologin)| {
                profiles::listing_profile(&built, user, flavour, autologin, &HostStatus::Unknown)
            })
            .collect())
    }

    /// `selectsession` (§10.2) for a non-empty profile id, counted in the metrics and
    /// written to the audit log.
    async fn select_session(
        &self,
        snapshot: &Snapshot,
        config: &BrokerConfig,
        backend: Backend,
        request: &BrokerRequest,
        client_ip: &IpAddr,
        frontend: Frontend,
    ) -> Result<Selection, BrokerError> {
        let started = Instant::now();
        let (selection, outcome) = self
            .selection(snapshot, config, backend, request, client_ip, frontend)
            .await?;
        let label = match outcome {
            SelectionOutcome::Farm(crate::farm::Outcome::Resumed) => OutcomeLabel::Resumed,
            SelectionOutcome::Farm(crate::farm::Outcome::TookOver) => OutcomeLabel::TakenOver,
            SelectionOutcome::Farm(crate::farm::Outcome::New) => OutcomeLabel::New,
            SelectionOutcome::NoAgent if !selection.server.starts_with("no-") => OutcomeLabel::New,
            _ => OutcomeLabel::None,
        };
        self.operations.metrics.selection(label, started.elapsed());
        let audit = &self.operations.audit;
        audit.record(&AuditEvent::Selection {
            user: &request.user,
            profile: &request.profile_id,
            client: *client_ip,
            server: &selection.server,
            outcome: outcome.word(),
            reason: outcome.reason(),
        });
        if outcome == SelectionOutcome::Farm(crate::farm::Outcome::TookOver) {
            audit.record(&AuditEvent::Takeover {
                user: &request.user,
                server: &selection.server,
                profile: &request.profile_id,
            });
        }
        Ok(selection)
    }

    /// Where a selection is decided: the steps every selection and explanation share (the
    /// profile, its ACLs, the farm's plan).
    fn selection_route<'a>(
        &'a self,
        snapshot: &'a Snapshot,
        config: &BrokerConfig,
        backend: Backend,
        user: &str,
        profile_id: &str,
        client_ip: &IpAddr,
    ) -> Result<SelectionRoute<'a>, BrokerError> {
        if backend == Backend::Zeroconf {
            return Ok(SelectionRoute::Answer(
                Selection::server("localhost", 22),
                ExplainPath::Zeroconf,
            ));
        }
        let Some(built) = Self::profile_set(snapshot)?.get(profile_id) else {
            return Ok(SelectionRoute::Answer(
                Selection::server("no-server-available", 22),
                ExplainPath::UnknownProfile,
            ));
        };
        let built = built.as_ref().map_err(|error| error.clone())?;
        // Fix of §16 S4: a profile the user may not see is answered like an unknown one.
        let verdict = AclCheck::new(config, backend)?.verdict(&built.acls, user, client_ip);
        if !verdict.granted() {
            return Ok(SelectionRoute::Answer(
                Selection::server("no-server-available", 22),
                ExplainPath::Acl(verdict),
            ));
        }
        let portscan = built.settings.portscan_x2goservers.get()?;
        match (self.farm_plan(built), &self.farm) {
            (Some(plan), Some(farm)) => {
                let choice = crate::farm::ServerChoice {
                    portscan,
                    ranking: crate::farm::policy::Ranking::with_load_checker(
                        built.settings.use_load_checker.get()?,
                    ),
                };
                Ok(SelectionRoute::Farm {
                    built,
                    farm,
                    plan,
                    choice,
                })
            }
            _ => Ok(SelectionRoute::NoAgent { built, portscan }),
        }
    }

    /// The selection and how it was made.
    async fn selection(
        &self,
        snapshot: &Snapshot,
        config: &BrokerConfig,
        backend: Backend,
        request: &BrokerRequest,
        client_ip: &IpAddr,
        frontend: Frontend,
    ) -> Result<(Selection, SelectionOutcome), BrokerError> {
        let route = self.selection_route(
            snapshot,
            config,
            backend,
            &request.user,
            &request.profile_id,
            client_ip,
        )?;
        let drained = |host: &str| self.operations.drain.is_drained(host);
        match route {
            SelectionRoute::Answer(selection, path) => {
                if let ExplainPath::Acl(_) = path {
                    tracing::warn!(user = %request.user, profile = %request.profile_id, "selection of a profile the ACLs hide refused");
                }
                Ok((selection, SelectionOutcome::Refused))
            }
            SelectionRoute::Farm {
                built,
                farm,
                plan,
                choice,
            } => {
                let profile = &built.profile;
                // Sessions are looked up and keys installed for the authenticated user only
                // (fix §16 S3): a different `login` is ignored.
                if !request.login.is_empty() && request.login != request.user {
                    tracing::warn!(user = %request.user, login = %request.login, "login differs from the authenticated user: ignored");
                }
                if self.settings.debug {
                    let explanation = farm.explain(built, &plan, &request.user, choice).await;
                    for host in &explanation.hosts {
                        tracing::debug!(user = %request.user, profile = %profile.id, server = %host.host, chosen = host.chosen, reason = %host.reason, "selection: server considered");
                    }
                }
                // the SSH broker mode lives for one request: a one-time key it installed could
                // not be removed after its lifetime, so it installs none (COMPATIBILITY.md)
                let autologin =
                    built.settings.session_autologin.get()? && frontend != Frontend::Ssh;
                let autologin = (autologin && !request.user.is_empty()).then(|| {
                    crate::farm::AutologinRequest {
                        pubkey: request.pubkey.clone(),
                        key_file: built.settings.authorized_keys.clone(),
                    }
                });
                let (mut selection, outcome) = farm
                    .select(built, &plan, &request.user, client_ip, choice, autologin)
                    .await;
                if outcome == crate::farm::Outcome::NoServer
                    && select::every_host_drained(profile, &drained)
                {
                    selection = select::all_drained(profile);
                }
                tracing::info!(user = %request.user, profile = %profile.id, server = %selection.server, ?outcome, "selected from live state");
                Ok((selection, SelectionOutcome::Farm(outcome)))
            }
            SelectionRoute::NoAgent { built, portscan } => {
                let selection = select::select_without_agent(
                    &built.profile,
                    portscan,
                    &drained,
                    &mut RealWorld,
                )
                .await;
                Ok((selection, SelectionOutcome::NoAgent))
            }
        }
    }

    /// What `selectsession` would answer now for `user` and `profile_id` (the default
    /// backend), through the same steps, without side effects: no placement, no suspend, no
    /// key. Every server of the profile comes with its reason.
    pub async fn explain(
        &self,
        user: &str,
        profile_id: &str,
        client_ip: &IpAddr,
    ) -> Result<Explained, BrokerError> {
        let backend = self.backend_for("").ok_or(BrokerError::NotFound)?;
        let snapshot = self.snapshot();
        let config = snapshot.config.clone().map_err(BrokerError::Internal)?;
        let route =
            self.selection_route(&snapshot, &config, backend, user, profile_id, client_ip)?;
        let drained = |host: &str| self.operations.drain.is_drained(host);
        match route {
            SelectionRoute::Answer(selection, path) => Ok(Explained {
                path,
                decision: None,
                selection,
                hosts: Vec::new(),
            }),
            SelectionRoute::Farm {
                built,
                farm,
                plan,
                choice,
            } => {
                let explanation = farm.explain(built, &plan, user, choice).await;
                let mut selection = explanation.selection;
                if explanation.decision == crate::farm::policy::Decision::NoServer
                    && select::every_host_drained(&built.profile, &drained)
                {
                    selection = select::all_drained(&built.profile);
                }
                Ok(Explained {
                    path: ExplainPath::LiveFarm,
                    decision: Some(explanation.decision),
                    selection,
                    hosts: explanation.hosts,
                })
            }
            SelectionRoute::NoAgent { built, .. } => {
                let profile = &built.profile;
                let candidates: Vec<&String> = profile
                    .host_names()
                    .iter()
                    .filter(|host| !drained(host))
                    .collect();
                let hosts = profile
                    .host_names()
                    .iter()
                    .map(|host| crate::farm::policy::HostReason {
                        host: host.clone(),
                        chosen: false,
                        reason: if drained(host) {
                            "drained: no new sessions".to_string()
                        } else {
                            format!(
                                "candidate: chosen at random among {} (no agent for this profile)",
                                candidates.len()
                            )
                        },
                        rank: None,
                        view: None,
                    })
                    .collect();
                let selection = match candidates.as_slice() {
                    _ if select::every_host_drained(profile, &drained) => {
                        select::all_drained(profile)
                    }
                    [only] => Selection::server(
                        profile
                            .host_address(only)
                            .unwrap_or_else(|| (*only).clone()),
                        profile.host_port(only).unwrap_or(profile.ssh_port()),
                    ),
                    _ => Selection::server("", profile.ssh_port()),
                };
                Ok(Explained {
                    path: ExplainPath::NoAgent,
                    decision: None,
                    selection,
                    hosts,
                })
            }
        }
    }

    /// Every server the farm knows or a profile names, by name (the admin API, the metrics,
    /// the status page), plus drained servers neither knows.
    pub async fn farm_overview(&self) -> Vec<crate::farm::balancer::ServerOverview> {
        let mut servers = match &self.farm {
            Some(farm) => farm.overview().await,
            None => Vec::new(),
        };
        let snapshot = self.snapshot();
        let named: Vec<String> = match snapshot.profile_set() {
            Ok(set) => set
                .iter()
                .flatten()
                .flat_map(|built| built.profile.host_names().to_vec())
                .collect(),
            Err(_) => Vec::new(),
        };
        for name in named.into_iter().chain(self.operations.drain.drained()) {
            if !servers.iter().any(|server| server.name == name) {
                servers.push(crate::farm::balancer::ServerOverview {
                    name,
                    view: None,
                    last_heard: None,
                });
            }
        }
        servers.sort_by(|a, b| a.name.cmp(&b.name));
        servers
    }

    /// Whether some profile of the current config names `server` (only those can be drained).
    pub fn names_server(&self, server: &str) -> bool {
        let snapshot = self.snapshot();
        let Ok(set) = snapshot.profile_set() else {
            return false;
        };
        let named = set
            .iter()
            .flatten()
            .any(|built| built.profile.host_names().iter().any(|host| host == server));
        named
    }

    /// Drains (`drain`) or undrains `server` for every profile that names it, for `by` (the
    /// admin client): the state file first, then the farm; an audit line. Answers whether
    /// anything changed.
    pub fn set_drained(&self, server: &str, drain: bool, by: &str) -> Result<bool, DrainFailure> {
        if drain && !self.names_server(server) && !self.operations.drain.is_drained(server) {
            return Err(DrainFailure::UnknownServer);
        }
        let changed = match self.cluster.get() {
            // in a cluster the shared table is the truth: written first (every broker, this
            // one too, is notified and applies it), then kept here at once. Called on a
            // blocking thread.
            Some(cluster) => {
                let changed = tokio::runtime::Handle::current()
                    .block_on(cluster.set_drained(server, drain, by))
                    .map_err(|error| DrainFailure::NotKept(error.to_string()))?;
                if let Err(error) = self.operations.drain.set(server, drain) {
                    tracing::error!(%error, "drain state not kept in this broker's file (the cluster's table has it)");
                }
                changed
            }
            None => self
                .operations
                .drain
                .set(server, drain)
                .map_err(|error| DrainFailure::NotKept(error.to_string()))?,
        };
        if let Some(farm) = &self.farm {
            farm.set_drained(self.operations.drain.drained());
        }
        if changed {
            tracing::info!(server, drained = drain, by, "drain state changed");
            self.operations.audit.record(&AuditEvent::Drain {
                server,
                drained: drain,
                by,
            });
        }
        Ok(changed)
    }
}

impl Broker {
    /// Applies the drained set of the cluster's shared table (read at start, on every
    /// notification and reconnect): the drain store, then the farm.
    pub fn apply_shared_drain(&self, servers: std::collections::BTreeSet<String>) {
        if self.operations.drain.replace(servers.clone()) {
            tracing::info!(servers = ?servers, "drained servers (from the cluster)");
            if let Some(farm) = &self.farm {
                farm.set_drained(servers);
            }
        }
    }
}

/// Why a drain or undrain was not done.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DrainFailure {
    #[error("no profile names this server")]
    UnknownServer,
    #[error("the drain state could not be kept: {0}")]
    NotKept(String),
}

/// How a selection was made (metrics, audit).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SelectionOutcome {
    /// From the live farm.
    Farm(crate::farm::Outcome),
    /// Without agents (random among the profile's hosts).
    NoAgent,
    /// Before any server was looked at (unknown profile, ACLs, zeroconf).
    Refused,
}

impl SelectionOutcome {
    /// The audit log's word.
    fn word(self) -> &'static str {
        match self {
            SelectionOutcome::Farm(crate::farm::Outcome::Resumed) => "resumed",
            SelectionOutcome::Farm(crate::farm::Outcome::TookOver) => "taken_over",
            SelectionOutcome::Farm(crate::farm::Outcome::New) => "new",
            SelectionOutcome::Farm(crate::farm::Outcome::NoServer) => "none",
            SelectionOutcome::NoAgent => "no_agent",
            SelectionOutcome::Refused => "none",
        }
    }

    /// The audit log's reason.
    fn reason(self) -> &'static str {
        match self {
            SelectionOutcome::Farm(crate::farm::Outcome::Resumed) => {
                "the user's suspended session is resumed"
            }
            SelectionOutcome::Farm(crate::farm::Outcome::TookOver) => {
                "the user's running session is taken over"
            }
            SelectionOutcome::Farm(crate::farm::Outcome::New) => {
                "a new session on the best healthy server that is not drained"
            }
            SelectionOutcome::Farm(crate::farm::Outcome::NoServer) => {
                "no healthy server that is not drained"
            }
            SelectionOutcome::NoAgent => "no agent: a random server that is not drained",
            SelectionOutcome::Refused => "unknown profile, hidden by its ACLs, or zeroconf",
        }
    }
}

/// Where a selection is decided.
enum SelectionRoute<'a> {
    /// Answered before any server is looked at.
    Answer(Selection, ExplainPath),
    /// By the live farm.
    Farm {
        built: &'a Arc<BuiltProfile>,
        farm: &'a FarmHandle,
        plan: crate::farm::AgentPlan,
        choice: crate::farm::ServerChoice,
    },
    /// Without agents.
    NoAgent {
        built: &'a Arc<BuiltProfile>,
        portscan: bool,
    },
}

/// How an explained selection is decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExplainPath {
    /// By the live farm's state.
    LiveFarm,
    /// At random among the hosts not drained (no agent for the profile).
    NoAgent,
    /// The ACLs hide the profile from the user (answered as an unknown profile).
    Acl(AclVerdict),
    UnknownProfile,
    Zeroconf,
}

/// What [`Broker::explain`] answers.
#[derive(Debug, Clone)]
pub struct Explained {
    pub path: ExplainPath,
    /// The live farm's decision, when the farm decides.
    pub decision: Option<crate::farm::policy::Decision>,
    /// The answer `selectsession` would give (no server name when chosen at random).
    pub selection: Selection,
    pub hosts: Vec<crate::farm::policy::HostReason>,
}

/// The metrics label of a mechanism.
fn mechanism_label(mechanism: &Mechanism) -> MechLabel {
    match mechanism {
        Mechanism::None => MechLabel::None,
        Mechanism::Testsuite => MechLabel::Testsuite,
        Mechanism::Pam => MechLabel::Pam,
        Mechanism::HttpsGet(_) => MechLabel::HttpsGet,
        Mechanism::Unknown(_) => MechLabel::Unknown,
    }
}

/// One listed profile (uccs flavour) as a UCCS server entry (§4) for `user`; `pick_host`
/// chooses one of an X2Go profile's hosts (the reference uses `random.choice`).
fn uccs_server(
    profile: &ListedProfile,
    user: &str,
    pick_host: &mut dyn FnMut(&[String]) -> Option<String>,
) -> Result<RemoteDesktop, BrokerError> {
    let text = |key: &str| profile.get(key).map(Value::render_plain);
    let hosts = profile.hosts();
    if matches!(profile.get("directrdp"), Some(Value::Bool(true))) {
        let name = text("name").ok_or_else(|| {
            BrokerError::Internal(format!("RDP profile [{}] has no name", profile.id()))
        })?;
        return Ok(RemoteDesktop::Rdp {
            name,
            first_host: hosts.first().cloned().unwrap_or_default(),
            username: user.to_string(),
        });
    }
    let name = text("name").unwrap_or_else(|| profile.id().to_string());
    let host = pick_host(&hosts).unwrap_or_default();
    let port = profile
        .host_port(&host)
        .or_else(|| match profile.get("sshport") {
            Some(Value::Int(port)) => Some(*port),
            _ => None,
        })
        .unwrap_or(22);
    let address = profile.host_address(&host).unwrap_or_else(|| host.clone());
    let command = text("command").unwrap_or_default();
    let upper = command.to_uppercase();
    let command = if profiles::DESKTOP_COMMANDS.contains(&upper.as_str()) {
        upper
    } else {
        command
    };
    Ok(RemoteDesktop::X2go {
        name,
        address,
        port,
        username: text("user").unwrap_or_default(),
        command,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ini::IniDocument;

    fn listed(profiles_text: &str, id: &str) -> ListedProfile {
        let document = IniDocument::parse(profiles_text).unwrap();
        let profile = profiles::build_profile(&document, id).unwrap().unwrap();
        let settings =
            ProfileSettings::resolve(&BrokerConfig::default(), Backend::Inifile, &profile);
        profiles::listing_profile(
            &Arc::new(BuiltProfile::new(profile, settings)),
            "maja",
            ListingFlavour::Uccs,
            false,
            &HostStatus::Unknown,
        )
    }

    #[test]
    fn uccs_entries_from_listed_profiles() {
        let profiles_text = "[mapped]\nname=Mapped\nhost=one (10.0.0.1:2222),two\nsshport=23\ncommand=kde\nuser=u\n\
            [plain]\nhost=three\ncommand=xterm\n\
            [rdp]\nname=Windows\ndirectrdp=true\nhost=win1,win2\n\
            [rdp-nameless]\ndirectrdp=true\nhost=win1\n";
        let cases = [
            (
                "one",
                "mapped",
                Ok(("Mapped", "10.0.0.1", 2222, "u", "KDE")),
            ),
            ("two", "mapped", Ok(("Mapped", "two", 23, "u", "KDE"))),
            // The listing transform (§7.4) fills an empty `user` with the user.
            (
                "three",
                "plain",
                Ok(("plain", "three", 22, "maja", "xterm")),
            ),
        ];
        for (picked, id, expected) in cases {
            let mut pick = |hosts: &[String]| {
                assert!(hosts.iter().any(|host| host == picked), "{hosts:?}");
                Some(picked.to_string())
            };
            let entry = uccs_server(&listed(profiles_text, id), "maja", &mut pick);
            let expected =
                expected.map(
                    |(name, address, port, username, command)| RemoteDesktop::X2go {
                        name: name.to_string(),
                        address: address.to_string(),
                        port,
                        username: username.to_string(),
                        command: command.to_string(),
                    },
                );
            assert_eq!(entry, expected, "{id} on {picked}");
        }
        let mut never = |_: &[String]| -> Option<String> { panic!("RDP entries pick no host") };
        assert_eq!(
            uccs_server(&listed(profiles_text, "rdp"), "maja", &mut never),
            Ok(RemoteDesktop::Rdp {
                name: "Windows".to_string(),
                first_host: "win1".to_string(),
                username: "maja".to_string(),
            })
        );
        assert_eq!(
            uccs_server(&listed(profiles_text, "rdp-nameless"), "maja", &mut never),
            Err(BrokerError::Internal(
                "RDP profile [rdp-nameless] has no name".to_string()
            ))
        );
    }
}
