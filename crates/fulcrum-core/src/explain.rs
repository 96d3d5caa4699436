//! Decisions in plain words: the machine-readable reason codes of the shipped policy modules and
//! of the lifecycle's own rules (`code` or `code:argument…`), as a sentence a reviewer can read.
//! The code stays the authority (it is what is logged and ledgered); an unknown code reads as
//! itself, so a site's own rules are never hidden.

/// One reason code as a sentence.
pub fn reason(code: &str) -> String {
    let mut parts = code.splitn(3, ':');
    let head = parts.next().unwrap_or_default();
    let a = parts.next().unwrap_or_default();
    let b = parts.next().unwrap_or_default();
    match head {
        "four_eyes" => {
            "Two approvals by different people in different roles, neither the publisher, are needed first.".into()
        }
        "chg_id_required" => "A change id (chg_id) is required for this move.".into(),
        "stage_not_allowed" => "The version's stage is not allowed in this environment.".into(),
        "revoked" => "The version is revoked; it can never be served again.".into(),
        "quarantined" => "The version is quarantined.".into(),
        "revalidate_by_missing" => "The version has no revalidation date, which this environment requires.".into(),
        "revalidation_overdue" => "The version's revalidation date has passed.".into(),
        "other_tenant" => "The model belongs to another tenant.".into(),
        "other_domain" => "The model is outside the caller's domains.".into(),
        "purpose_required" => "A declared purpose is required to use this model.".into(),
        "purpose_not_allowed" => "The caller's purpose is not one the model card allows.".into(),
        "role_forbids" => format!("The caller's role may not {}.", a.replace('_', " ")),
        "sensitive_needs_approvals" => format!("A model with sensitive labels needs {a} more approval(s)."),
        "open_cve" => format!("Open vulnerability {a} has no valid waiver."),
        "open_finding" => format!("Open finding {a} has no valid waiver."),
        "waiver_expired" => format!("Waiver {a} for {b} has expired."),
        "model_card_missing" => format!("The model card lacks its \"{a}\" field."),
        "missing" => format!("The release lacks its {a}."),
        "unknown_requirement" => format!("The release policy names an unknown requirement \"{a}\"."),
        "publisher_cannot_approve" => "The publisher of a version may not approve it.".into(),
        "role_cannot_approve" => "This role may not approve versions.".into(),
        "already_approved_by_subject" => "This person has already approved this version.".into(),
        "not_next_rung" => "Versions move one stage at a time.".into(),
        "no_demotion" => "A version is never moved down the ladder; revoke or quarantine it instead.".into(),
        "already_at_stage" => "The version is already at that stage.".into(),
        "downgrade_needs_change" => "Moving an alias to an older version needs allow_downgrade and a change id.".into(),
        "inc_id_required" => "An incident id (inc_id) is required.".into(),
        "lift_needs_approval" => "Lifting a quarantine needs a new approval first.".into(),
        "alias_env_fixed" => "An alias keeps the environment it was created with.".into(),
        _ => code.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::reason;

    #[test]
    fn codes_read_as_sentences_with_their_arguments_and_unknown_codes_as_themselves() {
        assert!(reason("four_eyes").contains("different people"));
        assert_eq!(reason("open_cve:CVE-2026-1"), "Open vulnerability CVE-2026-1 has no valid waiver.");
        assert_eq!(reason("waiver_expired:W-1:CVE-2"), "Waiver W-1 for CVE-2 has expired.");
        assert_eq!(reason("role_forbids:set_alias"), "The caller's role may not set alias.");
        assert_eq!(reason("site_rule:x"), "site_rule:x");
    }
}
