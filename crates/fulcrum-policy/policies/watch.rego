# The watchers' runbook (SPEC §12): may an Approved version keep serving, given its findings?
# The leader asks this for every serving Approved version with open critical or high findings;
# a deny naming open findings quarantines the version under a new incident (its aliases roll
# back, guards quiesce). Only `open_finding:` reasons act; any other reason is logged only.
# input: {"now_ns": …, "version": {"stage", "hold"},
#         "findings": [{"id", "severity", "status"}], "waivers": [{"id", "finding", "expires_ns"}]}
package fulcrum.watch

blocking_severities := {"critical", "high"}

waived(finding) if {
	some w in input.waivers
	w.finding == finding.id
	w.expires_ns > input.now_ns
}

deny contains sprintf("open_finding:%s", [f.id]) if {
	input.version.stage == "Approved"
	input.version.hold == "none"
	some f in input.findings
	f.status == "open"
	lower(f.severity) in blocking_severities
	not waived(f)
}

decision := {"allow": count(deny) == 0, "deny": deny}

base := {"now_ns": 100, "version": {"stage": "Approved", "hold": "none"},
	"findings": [{"id": "CVE-1", "severity": "critical", "status": "open"}], "waivers": []}

test_an_unwaived_critical_finding_stops_serving if {
	"open_finding:CVE-1" in deny with input as base
}

test_a_current_waiver_covers_it_an_expired_one_does_not if {
	count(deny) == 0 with input as object.union(base, {"waivers": [{"id": "W-1", "finding": "CVE-1", "expires_ns": 200}]})
	"open_finding:CVE-1" in deny with input as object.union(base, {"waivers": [{"id": "W-1", "finding": "CVE-1", "expires_ns": 50}]})
}

test_fixed_low_and_held_versions_are_left_alone if {
	count(deny) == 0 with input as object.union(base, {"findings": [{"id": "CVE-2", "severity": "low", "status": "open"}]})
	count(deny) == 0 with input as object.union(base, {"findings": [{"id": "CVE-1", "severity": "critical", "status": "fixed"}]})
	count(deny) == 0 with input as object.union(base, {"version": {"stage": "Approved", "hold": "quarantined"}})
}
