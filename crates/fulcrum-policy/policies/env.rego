# The environment rule (SPEC §2): which stages an environment may load. Held versions load nowhere.
# input: {"env": "prod", "version": {"stage": "Approved", "hold": "none"}}
# Alias moves also give "now_ns" and the version's "revalidate_by_ns": no alias moves onto a
# version whose revalidation is overdue (it keeps serving where it already does).
# Alias moves give "chg_id" too: a move in an environment the policy names
# (data.fulcrum.change_control.chg_id_for_alias_envs) is correlated to a change record.
package fulcrum.env

default allow := false

# Only alias moves say "operation": "set_alias"; resolves are never asked for a change id.
chg_id_given if {
	is_string(input.chg_id)
	input.chg_id != ""
}

chg_id_missing if {
	input.operation == "set_alias"
	input.env in data.fulcrum.change_control.chg_id_for_alias_envs
	not chg_id_given
}

overdue if input.version.revalidate_by_ns <= input.now_ns

allow if {
	input.version.hold == "none"
	input.version.stage in data.fulcrum.env_stages[input.env]
	not overdue
	not chg_id_missing
}

deny contains "chg_id_required" if chg_id_missing

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

test_prod_alias_moves_need_a_change_id if {
	move := {"operation": "set_alias", "env": "prod", "alias": "production", "now_ns": 100, "chg_id": null, "version": {"stage": "Approved", "hold": "none"}}
	"chg_id_required" in deny with input as move
	# A resolve (no operation) is never asked for one.
	allow with input as object.remove(move, ["operation"])
	allow with input as object.union(move, {"chg_id": "CHG-9"})
	allow with input as object.union(move, {"env": "staging", "version": {"stage": "Staging", "hold": "none"}})
}
