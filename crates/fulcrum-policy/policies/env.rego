# The environment rule (SPEC §2): which stages an environment may load. Held versions load nowhere.
# input: {"env": "prod", "version": {"stage": "Approved", "hold": "none"}}
package fulcrum.env

default allow := false

allow if {
	input.version.hold == "none"
	input.version.stage in data.fulcrum.env_stages[input.env]
}

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
