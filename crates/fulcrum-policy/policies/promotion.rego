# Promotion gates (SPEC §7, seed §4.3, §8 "expired waiver"). Time comes in as input (now_ns).
# input: {"to": "Approved", "now_ns": …, "version": {"publisher", "revalidate_by_ns", "model_card": {…}, "labels": […],
#         "approvals": [{"subject", "role"}], "findings": [{"id", "severity", "status"}]},
#         "waivers": [{"id", "finding", "expires_ns", "approver", "justification"}]}
package fulcrum.promotion

qualifying contains a if {
	some a in input.version.approvals
	a.subject != input.version.publisher
	a.role in data.fulcrum.approver_roles
}

four_eyes if {
	some a in qualifying
	some b in qualifying
	a.subject != b.subject
	a.role != b.role
}

deny contains "four_eyes" if {
	input.to == "Approved"
	not four_eyes
}

# DLP: a version with a sensitive label needs extra approvals from distinct people.
sensitive if {
	some label in input.version.labels
	label in data.fulcrum.dlp.sensitive_labels
}

needed := 2 + data.fulcrum.dlp.extra_approvals if sensitive

else := 2

deny contains sprintf("sensitive_needs_approvals:%d", [needed]) if {
	input.to == "Approved"
	sensitive
	count({a.subject | some a in qualifying}) < needed
}

blocking_severities := {"critical", "high"}

waived(finding) if {
	some w in input.waivers
	w.finding == finding.id
	w.expires_ns > input.now_ns
}

expired_waiver(finding) := w.id if {
	some w in input.waivers
	w.finding == finding.id
	w.expires_ns <= input.now_ns
}

deny contains sprintf("open_cve:%s", [f.id]) if {
	input.to in {"Staging", "Approved"}
	some f in input.version.findings
	f.status == "open"
	lower(f.severity) in blocking_severities
	not waived(f)
	not expired_waiver(f)
}

deny contains sprintf("waiver_expired:%s:%s", [expired_waiver(f), f.id]) if {
	input.to in {"Staging", "Approved"}
	some f in input.version.findings
	f.status == "open"
	lower(f.severity) in blocking_severities
	not waived(f)
}

deny contains "revalidate_by_missing" if {
	input.to == "Approved"
	not input.version.revalidate_by_ns
}

deny contains "revalidation_overdue" if {
	input.to in {"Staging", "Approved"}
	input.version.revalidate_by_ns <= input.now_ns
}

deny contains sprintf("model_card_missing:%s", [field]) if {
	input.to == "Approved"
	some field in data.fulcrum.required_card_fields
	not input.version.model_card[field]
}

# Change control (seed §4.3): a promotion into a stage the policy names is correlated to a change
# record (data.fulcrum.change_control.chg_id_for_promotion_to; empty to turn it off).
chg_id_given if {
	is_string(input.chg_id)
	input.chg_id != ""
}

deny contains "chg_id_required" if {
	input.to in data.fulcrum.change_control.chg_id_for_promotion_to
	not chg_id_given
}

decision := {"allow": count(deny) == 0, "deny": deny}

base := {"to": "Approved", "now_ns": 100, "chg_id": "CHG-1", "version": {"publisher": "ci", "revalidate_by_ns": 200,
	"model_card": {"owner": "risk", "intended_use": "scoring"},
	"approvals": [{"subject": "ana", "role": "approver"}, {"subject": "bo", "role": "security-officer"}],
	"findings": []}, "waivers": []}

test_clean_release_passes if {
	decision.allow with input as base
}

test_same_person_twice_is_not_four_eyes if {
	inp := object.union(base, {"version": object.union(base.version, {"approvals": [{"subject": "ana", "role": "approver"}, {"subject": "ana", "role": "security-officer"}]})})
	"four_eyes" in deny with input as inp
}

test_expired_waiver_is_named if {
	inp := object.union(base, {"version": object.union(base.version, {"findings": [{"id": "CVE-1", "severity": "critical", "status": "open"}]}),
		"waivers": [{"id": "W-7", "finding": "CVE-1", "expires_ns": 50}]})
	"waiver_expired:W-7:CVE-1" in deny with input as inp
}

test_sensitive_version_needs_a_third_approver if {
	sensitive_in := object.union(base, {"version": object.union(base.version, {"labels": ["pii:restricted"]})})
	"sensitive_needs_approvals:3" in deny with input as sensitive_in
	three := [{"subject": "ana", "role": "approver"}, {"subject": "bo", "role": "security-officer"}, {"subject": "rm", "role": "release-manager"}]
	decision.allow with input as object.union(sensitive_in, {"version": object.union(sensitive_in.version, {"approvals": three})})
}

test_approved_needs_a_change_id if {
	"chg_id_required" in deny with input as object.remove(base, ["chg_id"])
	"chg_id_required" in deny with input as object.union(base, {"chg_id": null})
	not "chg_id_required" in deny with input as object.union(object.remove(base, ["chg_id"]), {"to": "Staging"})
}
