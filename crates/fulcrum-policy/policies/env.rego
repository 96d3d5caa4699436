# The environment rule (SPEC §2): which stages an environment may load. Held versions load nowhere.
# input: {"env": "prod", "version": {"stage": "Approved", "hold": "none"}}
# Alias moves also give "now_ns" and the version's "revalidate_by_ns": no alias moves onto a
# version whose revalidation is overdue (it keeps serving where it already does).
package fulcrum.env

default allow := false

overdue if input.version.revalidate_by_ns <= input.now_ns

allow if {
	input.version.hold == "none"
	input.version.stage in data.fulcrum.env_stages[input.env]
	not overdue
}

deny contains "revalidation_overdue" if overdue

deny contains "revoked" if input.version.hold == "revoked"

deny contains "quarantined" if input.version.hold == "quarantined"

deny contains "stage_not_allowed" if {
	input.version.hold == "none"
	not input.version.stage in data.fulcrum.env_stages[input.env]
}

decision := {"allow": allow, "deny": deny}

test_prod_loads_only_approved if {
	allow with input as {"env": "prod", "version": {"stage": "Approved", "hold": "none"}}
	not allow with input as {"env": "prod", "version": {"stage": "Staging", "hold": "none"}}
	"stage_not_allowed" in deny with input as {"env": "prod", "version": {"stage": "Staging", "hold": "none"}}
}

test_held_loads_nowhere if {
	not allow with input as {"env": "dev", "version": {"stage": "Candidate", "hold": "revoked"}}
	"quarantined" in deny with input as {"env": "dev", "version": {"stage": "Approved", "hold": "quarantined"}}
}

test_no_alias_move_onto_an_overdue_version if {
	ok := {"env": "prod", "now_ns": 100, "version": {"stage": "Approved", "hold": "none", "revalidate_by_ns": 200}}
	allow with input as ok
	not allow with input as object.union(ok, {"now_ns": 300})
	"revalidation_overdue" in deny with input as object.union(ok, {"now_ns": 300})
	# Resolve's input carries no dates: serving is not affected.
	allow with input as {"env": "prod", "version": {"stage": "Approved", "hold": "none"}}
}
