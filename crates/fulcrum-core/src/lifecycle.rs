//! The lifecycle state machine (SPEC §2): stages, holds, approvals, aliases and rollback.
//!
//! [`ModelState`] is the governance state of one model: its versions' stage/hold/approvals and its
//! aliases with their full history. [`ModelState::apply`] takes a command and either refuses it
//! with a named [`Refusal`] (and changes nothing) or changes the state and returns the
//! [`Effect`]s that storage must persist and turn into events, in the same transaction.
//!
//! # Invariants
//! - Stage moves one rung up at a time (`Candidate → Staging → Approved`) and never down.
//! - `Revoked` is terminal; `Quarantined` is lifted only with an approval from another person.
//! - Promotion to `Approved` needs approvals from two distinct subjects in distinct roles, neither
//!   of them the publisher.
//! - An alias only ever points at a version its environment allows; a hold on its target moves it
//!   back to the previous healthy Approved version in its history, or empties it.
//! - Alias history is append-only: every move, rollback and clear is a new entry.
//! - An alias never moves to a lower `seq` without an explicit change id (`chg_id`).

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::digest::Digest;
use crate::identity::{Role, role_can_approve};
use crate::names::{AliasName, VersionLabel};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Stage {
    Candidate,
    Staging,
    Approved,
}

impl Stage {
    pub const ALL: [Stage; 3] = [Stage::Candidate, Stage::Staging, Stage::Approved];
    pub fn next(self) -> Option<Stage> {
        match self {
            Stage::Candidate => Some(Stage::Staging),
            Stage::Staging => Some(Stage::Approved),
            Stage::Approved => None,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Candidate => "Candidate",
            Stage::Staging => "Staging",
            Stage::Approved => "Approved",
        }
    }
}

impl FromStr for Stage {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        Stage::ALL.into_iter().find(|x| x.as_str() == s).ok_or(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Hold {
    None,
    Quarantined,
    Revoked,
}

impl Hold {
    pub const ALL: [Hold; 3] = [Hold::None, Hold::Quarantined, Hold::Revoked];
    pub fn as_str(self) -> &'static str {
        match self {
            Hold::None => "none",
            Hold::Quarantined => "quarantined",
            Hold::Revoked => "revoked",
        }
    }
}

impl FromStr for Hold {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        Hold::ALL.into_iter().find(|x| x.as_str() == s).ok_or(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Env {
    Dev,
    Staging,
    Prod,
}

impl Env {
    pub const ALL: [Env; 3] = [Env::Dev, Env::Staging, Env::Prod];
    pub fn as_str(self) -> &'static str {
        match self {
            Env::Dev => "dev",
            Env::Staging => "staging",
            Env::Prod => "prod",
        }
    }
    /// The environment a stage is the first one allowed in (the `env` of a promotion event).
    pub fn of_stage(stage: Stage) -> Env {
        match stage {
            Stage::Candidate => Env::Dev,
            Stage::Staging => Env::Staging,
            Stage::Approved => Env::Prod,
        }
    }

    /// The default environment of an alias, by its name (SPEC §2: `production` → `prod`).
    pub fn for_alias(alias: &str) -> Env {
        match alias {
            "production" | "prod" | "canary" | "shadow" => Env::Prod,
            "staging" | "preprod" => Env::Staging,
            _ => Env::Dev,
        }
    }
}

impl fmt::Display for Env {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Env {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        Env::ALL.into_iter().find(|x| x.as_str() == s).ok_or(())
    }
}

/// Why a command or a load was refused. Each variant has a stable machine-readable code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("version is revoked; revocation is terminal")]
    Revoked,
    #[error("version is quarantined")]
    Quarantined,
    #[error("version is not quarantined")]
    NotQuarantined,
    #[error("version is already quarantined")]
    AlreadyQuarantined,
    #[error("promotion must climb one rung: {from} can only go to {allowed}")]
    NotNextRung { from: &'static str, allowed: &'static str },
    #[error("stages never go down; use revocation or quarantine to stop a version")]
    NoDemotion,
    #[error("version is already {0}")]
    AlreadyAtStage(&'static str),
    #[error("approved versions need no more promotion approvals")]
    NothingToApprove,
    #[error("the publisher of a version cannot approve it")]
    PublisherCannotApprove,
    #[error("role {0} cannot approve")]
    RoleCannotApprove(Role),
    #[error("{0} has already approved this version")]
    AlreadyApprovedBy(String),
    #[error(
        "four-eyes rule: Approved needs approvals from two distinct people in distinct roles, neither the publisher (have {subjects} approver(s) in {roles} role(s))"
    )]
    FourEyes { subjects: usize, roles: usize },
    #[error(
        "lifting a quarantine needs an approval, given during the quarantine, from someone other than the person lifting it"
    )]
    LiftNeedsApproval,
    #[error("stage {stage} is not allowed in env {env}")]
    StageNotAllowed { stage: &'static str, env: Env },
    #[error(
        "moving an alias to an older version (seq {to} < {from}) is a downgrade and needs allow_downgrade with a chg_id"
    )]
    DowngradeNeedsChange { from: u64, to: u64 },
    #[error("a change id (chg_id) is required for this action")]
    ChangeIdRequired,
    #[error("an incident or change id (inc_id or chg_id) is required for this action")]
    IncidentIdRequired,
    #[error("alias {0} belongs to env {1}; delete it to change its env")]
    AliasEnvFixed(String, Env),
    #[error("alias has no target")]
    AliasEmpty,
    #[error("no such version")]
    UnknownVersion,
    #[error("no such alias")]
    UnknownAlias,
    #[error("'{0}' is already a version label of this model; aliases and versions must not share names")]
    AliasShadowsVersion(String),
    #[error("the policy denies it: {}", .0.join(", "))]
    PolicyDenied(Vec<String>),
}

impl Refusal {
    /// Stable machine-readable code (snake_case) used in problem+json, deny reasons and events.
    pub fn code(&self) -> &'static str {
        match self {
            Refusal::Revoked => "revoked",
            Refusal::Quarantined => "quarantined",
            Refusal::NotQuarantined => "not_quarantined",
            Refusal::AlreadyQuarantined => "already_quarantined",
            Refusal::NotNextRung { .. } => "not_next_rung",
            Refusal::NoDemotion => "no_demotion",
            Refusal::AlreadyAtStage(_) => "already_at_stage",
            Refusal::NothingToApprove => "nothing_to_approve",
            Refusal::PublisherCannotApprove => "publisher_cannot_approve",
            Refusal::RoleCannotApprove(_) => "role_cannot_approve",
            Refusal::AlreadyApprovedBy(_) => "already_approved_by_subject",
            Refusal::FourEyes { .. } => "four_eyes",
            Refusal::LiftNeedsApproval => "lift_needs_approval",
            Refusal::StageNotAllowed { .. } => "stage_not_allowed",
            Refusal::DowngradeNeedsChange { .. } => "downgrade_needs_change",
            Refusal::ChangeIdRequired => "chg_id_required",
            Refusal::IncidentIdRequired => "inc_id_required",
            Refusal::AliasEnvFixed(..) => "alias_env_fixed",
            Refusal::AliasEmpty => "alias_empty",
            Refusal::UnknownVersion => "unknown_version",
            Refusal::UnknownAlias => "unknown_alias",
            Refusal::AliasShadowsVersion(_) => "alias_shadows_version",
            Refusal::PolicyDenied(_) => "policy_denied",
        }
    }
}

/// The default environment rule (a policy in SPEC §2; the policy engine will own it later):
/// `dev` loads any stage, `staging` loads Staging and Approved, `prod` only Approved; held
/// versions load nowhere.
///
/// # Errors
/// The named reason the load is denied.
pub fn env_allows(env: Env, stage: Stage, hold: Hold) -> Result<(), Refusal> {
    match hold {
        Hold::Revoked => return Err(Refusal::Revoked),
        Hold::Quarantined => return Err(Refusal::Quarantined),
        Hold::None => {}
    }
    let ok = match env {
        Env::Dev => true,
        Env::Staging => stage >= Stage::Staging,
        Env::Prod => stage == Stage::Approved,
    };
    if ok { Ok(()) } else { Err(Refusal::StageNotAllowed { stage: stage.as_str(), env }) }
}

/// Identifier of a version inside storage. Opaque to the core.
pub type VersionId = i64;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ApprovalKind {
    /// Counts toward promotion (four-eyes).
    Promotion,
    /// Given while quarantined; counts toward lifting the quarantine.
    Lift,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Approval {
    pub subject: String,
    pub role: Role,
    pub kind: ApprovalKind,
    /// Which quarantine this lift approval belongs to (the hold epoch), so an approval given for an
    /// earlier quarantine cannot lift a later one.
    pub epoch: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionGov {
    pub id: VersionId,
    pub label: VersionLabel,
    pub seq: u64,
    pub artifact_digest: Digest,
    pub stage: Stage,
    pub hold: Hold,
    /// Incremented every time a quarantine starts.
    pub hold_epoch: u32,
    pub publisher: String,
    pub approvals: Vec<Approval>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AliasCause {
    /// Moved forward (or to the same seq) by an operator.
    Set,
    /// Moved to a lower seq by an operator with an explicit change id.
    Downgrade,
    /// Moved back automatically because its target was revoked or quarantined.
    Rollback,
    /// Emptied automatically: its target was held and no healthy Approved version was left.
    Cleared,
    /// Deleted by an operator.
    Deleted,
}

impl AliasCause {
    pub fn as_str(self) -> &'static str {
        match self {
            AliasCause::Set => "set",
            AliasCause::Downgrade => "downgrade",
            AliasCause::Rollback => "rollback",
            AliasCause::Cleared => "cleared",
            AliasCause::Deleted => "deleted",
        }
    }
}

impl FromStr for AliasCause {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        [AliasCause::Set, AliasCause::Downgrade, AliasCause::Rollback, AliasCause::Cleared, AliasCause::Deleted]
            .into_iter()
            .find(|c| c.as_str() == s)
            .ok_or(())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AliasEntry {
    /// 1, 2, 3… per alias; never reused.
    pub position: u64,
    pub version: Option<VersionId>,
    pub cause: AliasCause,
    pub chg_id: Option<String>,
    pub inc_id: Option<String>,
    pub actor: String,
    pub at: OffsetDateTime,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AliasState {
    pub env: Env,
    pub target: Option<VersionId>,
    pub history: Vec<AliasEntry>,
}

/// The governance state of one model, as loaded by storage inside a transaction.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ModelState {
    /// Sorted by `seq`.
    pub versions: Vec<VersionGov>,
    pub aliases: BTreeMap<AliasName, AliasState>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    pub subject: String,
    pub role: Role,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Approve { version: VersionId },
    Promote { version: VersionId, to: Stage },
    Quarantine { version: VersionId, inc_id: Option<String>, chg_id: Option<String> },
    LiftQuarantine { version: VersionId, chg_id: Option<String> },
    Revoke { version: VersionId, inc_id: Option<String>, chg_id: Option<String> },
    SetAlias { alias: AliasName, version: VersionId, env: Option<Env>, chg_id: Option<String>, allow_downgrade: bool },
    DeleteAlias { alias: AliasName, chg_id: Option<String> },
}

/// One persisted change. Storage writes each and emits the event named by [`Effect::event_kind`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    Approved { version: VersionId, approval: Approval },
    StageChanged { version: VersionId, from: Stage, to: Stage },
    HoldChanged { version: VersionId, from: Hold, to: Hold, epoch: u32 },
    AliasMoved { alias: AliasName, env: Env, from: Option<VersionId>, to: Option<VersionId>, entry: AliasEntry },
}

/// Four-eyes over a version's promotion approvals `(subject, role)`: whether two of them come
/// from distinct subjects in distinct approving roles, neither the publisher; and the approvals
/// that qualify (the rest are the publisher's or of roles that may not approve).
pub fn four_eyes_of<'a>(
    publisher: &str,
    approvals: impl IntoIterator<Item = (&'a str, Role)>,
) -> (bool, Vec<(&'a str, Role)>) {
    let qualifying: Vec<(&str, Role)> =
        approvals.into_iter().filter(|(subject, role)| *subject != publisher && role_can_approve(*role)).collect();
    let met = qualifying.iter().enumerate().any(|(i, a)| qualifying[i + 1..].iter().any(|b| a.0 != b.0 && a.1 != b.1));
    (met, qualifying)
}

impl ModelState {
    pub fn version(&self, id: VersionId) -> Option<&VersionGov> {
        self.versions.iter().find(|v| v.id == id)
    }

    fn version_mut(&mut self, id: VersionId) -> Result<&mut VersionGov, Refusal> {
        self.versions.iter_mut().find(|v| v.id == id).ok_or(Refusal::UnknownVersion)
    }

    /// Four-eyes: two promotion approvals from distinct subjects in distinct roles, neither the
    /// publisher. Returns how many qualifying approvals exist when the rule is not met.
    pub fn four_eyes(v: &VersionGov) -> Result<(), Refusal> {
        let promotion = v.approvals.iter().filter(|a| a.kind == ApprovalKind::Promotion);
        let (met, qualifying) = four_eyes_of(&v.publisher, promotion.map(|a| (a.subject.as_str(), a.role)));
        if met {
            return Ok(());
        }
        let subjects: std::collections::BTreeSet<&str> = qualifying.iter().map(|a| a.0).collect();
        let roles: std::collections::BTreeSet<Role> = qualifying.iter().map(|a| a.1).collect();
        Err(Refusal::FourEyes { subjects: subjects.len(), roles: roles.len() })
    }

    /// Apply one command. On `Err` the state is unchanged.
    ///
    /// # Errors
    /// A named [`Refusal`].
    pub fn apply(&mut self, actor: &Actor, cmd: Command, now: OffsetDateTime) -> Result<Vec<Effect>, Refusal> {
        match cmd {
            Command::Approve { version } => {
                let v = self.version(version).ok_or(Refusal::UnknownVersion)?;
                let kind = match (v.stage, v.hold) {
                    (_, Hold::Revoked) => return Err(Refusal::Revoked),
                    (_, Hold::Quarantined) => ApprovalKind::Lift,
                    (Stage::Approved, Hold::None) => return Err(Refusal::NothingToApprove),
                    (_, Hold::None) => ApprovalKind::Promotion,
                };
                if actor.subject == v.publisher {
                    return Err(Refusal::PublisherCannotApprove);
                }
                if !role_can_approve(actor.role) {
                    return Err(Refusal::RoleCannotApprove(actor.role));
                }
                let epoch = v.hold_epoch;
                if v.approvals.iter().any(|a| a.subject == actor.subject && a.kind == kind && a.epoch == epoch) {
                    return Err(Refusal::AlreadyApprovedBy(actor.subject.clone()));
                }
                let approval = Approval { subject: actor.subject.clone(), role: actor.role, kind, epoch };
                self.version_mut(version)?.approvals.push(approval.clone());
                Ok(vec![Effect::Approved { version, approval }])
            }
            Command::Promote { version, to } => {
                let v = self.version(version).ok_or(Refusal::UnknownVersion)?;
                match v.hold {
                    Hold::Revoked => return Err(Refusal::Revoked),
                    Hold::Quarantined => return Err(Refusal::Quarantined),
                    Hold::None => {}
                }
                if to == v.stage {
                    return Err(Refusal::AlreadyAtStage(to.as_str()));
                }
                if to < v.stage {
                    return Err(Refusal::NoDemotion);
                }
                let next = v.stage.next().ok_or(Refusal::AlreadyAtStage(v.stage.as_str()))?;
                if to != next {
                    return Err(Refusal::NotNextRung { from: v.stage.as_str(), allowed: next.as_str() });
                }
                if to == Stage::Approved {
                    Self::four_eyes(v)?;
                }
                let from = v.stage;
                self.version_mut(version)?.stage = to;
                Ok(vec![Effect::StageChanged { version, from, to }])
            }
            Command::Quarantine { version, inc_id, chg_id } => {
                if inc_id.is_none() && chg_id.is_none() {
                    return Err(Refusal::IncidentIdRequired);
                }
                let v = self.version(version).ok_or(Refusal::UnknownVersion)?;
                match v.hold {
                    Hold::Revoked => return Err(Refusal::Revoked),
                    Hold::Quarantined => return Err(Refusal::AlreadyQuarantined),
                    Hold::None => {}
                }
                let epoch = v.hold_epoch + 1;
                let v = self.version_mut(version)?;
                v.hold = Hold::Quarantined;
                v.hold_epoch = epoch;
                let mut effects = vec![Effect::HoldChanged { version, from: Hold::None, to: Hold::Quarantined, epoch }];
                effects.extend(self.roll_back_aliases(version, actor, chg_id, inc_id, now));
                Ok(effects)
            }
            Command::LiftQuarantine { version, chg_id } => {
                if chg_id.is_none() {
                    return Err(Refusal::ChangeIdRequired);
                }
                let v = self.version(version).ok_or(Refusal::UnknownVersion)?;
                match v.hold {
                    Hold::Revoked => return Err(Refusal::Revoked),
                    Hold::None => return Err(Refusal::NotQuarantined),
                    Hold::Quarantined => {}
                }
                let approved_by_other = v
                    .approvals
                    .iter()
                    .any(|a| a.kind == ApprovalKind::Lift && a.epoch == v.hold_epoch && a.subject != actor.subject);
                if !approved_by_other {
                    return Err(Refusal::LiftNeedsApproval);
                }
                let epoch = v.hold_epoch;
                self.version_mut(version)?.hold = Hold::None;
                // Aliases that rolled away from this version stay where they are: moving them
                // back is an explicit operator decision (a new alias set), never automatic.
                Ok(vec![Effect::HoldChanged { version, from: Hold::Quarantined, to: Hold::None, epoch }])
            }
            Command::Revoke { version, inc_id, chg_id } => {
                if inc_id.is_none() && chg_id.is_none() {
                    return Err(Refusal::IncidentIdRequired);
                }
                let v = self.version(version).ok_or(Refusal::UnknownVersion)?;
                if v.hold == Hold::Revoked {
                    return Err(Refusal::Revoked);
                }
                let (from, epoch) = (v.hold, v.hold_epoch);
                self.version_mut(version)?.hold = Hold::Revoked;
                let mut effects = vec![Effect::HoldChanged { version, from, to: Hold::Revoked, epoch }];
                effects.extend(self.roll_back_aliases(version, actor, chg_id, inc_id, now));
                Ok(effects)
            }
            Command::SetAlias { alias, version, env, chg_id, allow_downgrade } => {
                let v = self.version(version).ok_or(Refusal::UnknownVersion)?;
                if self.versions.iter().any(|x| x.label.as_str() == alias.as_str()) {
                    return Err(Refusal::AliasShadowsVersion(alias.to_string()));
                }
                let existing = self.aliases.get(&alias);
                let alias_env = match (existing, env) {
                    (Some(a), Some(e)) if a.env != e => {
                        return Err(Refusal::AliasEnvFixed(alias.to_string(), a.env));
                    }
                    (Some(a), _) => a.env,
                    (None, Some(e)) => e,
                    (None, None) => Env::for_alias(alias.as_str()),
                };
                env_allows(alias_env, v.stage, v.hold)?;
                let current = existing.and_then(|a| a.target);
                if current == Some(version) {
                    return Ok(vec![]); // idempotent: already there, nothing to record
                }
                let new_seq = v.seq;
                let cause = match current.and_then(|c| self.version(c)) {
                    Some(cur) if new_seq < cur.seq => {
                        if !allow_downgrade || chg_id.is_none() {
                            return Err(Refusal::DowngradeNeedsChange { from: cur.seq, to: new_seq });
                        }
                        AliasCause::Downgrade
                    }
                    _ => AliasCause::Set,
                };
                Ok(vec![self.move_alias(&alias, alias_env, Some(version), cause, actor, chg_id, None, now)])
            }
            Command::DeleteAlias { alias, chg_id } => {
                let a = self.aliases.get(&alias).ok_or(Refusal::UnknownAlias)?;
                if a.target.is_none() && a.history.last().is_some_and(|e| e.cause == AliasCause::Deleted) {
                    return Err(Refusal::UnknownAlias);
                }
                let env = a.env;
                Ok(vec![self.move_alias(&alias, env, None, AliasCause::Deleted, actor, chg_id, None, now)])
            }
        }
    }

    /// Is the alias live (created and not deleted)?
    pub fn alias_live(&self, alias: &AliasName) -> bool {
        self.aliases.get(alias).is_some_and(|a| !a.history.last().is_some_and(|e| e.cause == AliasCause::Deleted))
    }

    #[allow(clippy::too_many_arguments)]
    fn move_alias(
        &mut self,
        alias: &AliasName,
        env: Env,
        to: Option<VersionId>,
        cause: AliasCause,
        actor: &Actor,
        chg_id: Option<String>,
        inc_id: Option<String>,
        now: OffsetDateTime,
    ) -> Effect {
        let state =
            self.aliases.entry(alias.clone()).or_insert_with(|| AliasState { env, target: None, history: vec![] });
        let from = state.target;
        let entry = AliasEntry {
            position: state.history.len() as u64 + 1,
            version: to,
            cause,
            chg_id,
            inc_id,
            actor: actor.subject.clone(),
            at: now,
        };
        state.target = to;
        state.history.push(entry.clone());
        Effect::AliasMoved { alias: alias.clone(), env, from, to, entry }
    }

    /// The version an alias falls back to when its target is held: the most recent earlier
    /// entry in its history whose version is Approved, unheld, allowed in the alias's env, and
    /// not the held version. "Healthy" here means unheld and Approved; richer health signals
    /// (startup deny rate, drift) come from policy later.
    pub fn rollback_target(&self, alias: &AliasState, held: VersionId) -> Option<VersionId> {
        alias.history.iter().rev().filter_map(|e| e.version).find(|&id| {
            id != held
                && self
                    .version(id)
                    .is_some_and(|v| v.stage == Stage::Approved && env_allows(alias.env, v.stage, v.hold).is_ok())
        })
    }

    fn roll_back_aliases(
        &mut self,
        held: VersionId,
        actor: &Actor,
        chg_id: Option<String>,
        inc_id: Option<String>,
        now: OffsetDateTime,
    ) -> Vec<Effect> {
        let affected: Vec<(AliasName, Env, Option<VersionId>)> = self
            .aliases
            .iter()
            .filter(|(_, a)| a.target == Some(held))
            .map(|(name, a)| (name.clone(), a.env, self.rollback_target(a, held)))
            .collect();
        affected
            .into_iter()
            .map(|(name, env, target)| {
                let cause = if target.is_some() { AliasCause::Rollback } else { AliasCause::Cleared };
                self.move_alias(&name, env, target, cause, actor, chg_id.clone(), inc_id.clone(), now)
            })
            .collect()
    }
}
